/// Recommendations gathered over many incidents, folded: the same advice with other numbers
/// ("lower the learning rate to 0.015" at one incident, "… to 0.008" at the next, after a
/// back-off) is one recommendation, kept as first given, with the number of incidents that
/// gave it.
public enum Recommendations {
    /// A recommendation and how many incidents gave it.
    public struct Folded: Equatable, Sendable {
        /// The recommendation, as first given.
        public let text: String
        /// The incidents that gave it.
        public let count: Int
    }

    /// The distinct recommendations of `perIncident`, in order of first appearance.
    public static func folded(_ perIncident: [[String]]) -> [Folded] {
        var order: [String] = []
        var first: [String: String] = [:], counts: [String: Int] = [:]
        for recs in perIncident {
            var here = Set<String>()
            for r in recs {
                let k = shape(r)
                if first[k] == nil {
                    first[k] = r
                    order.append(k)
                }
                if here.insert(k).inserted { counts[k, default: 0] += 1 }
            }
        }
        return order.map { Folded(text: first[$0] ?? $0, count: counts[$0] ?? 0) }
    }

    /// The text with every number replaced by `#`.
    static func shape(_ s: String) -> String {
        var out = "", inNumber = false
        for ch in s {
            let numeric = ch.isNumber || (inNumber && (ch == "." || ch == "e" || ch == "+" || ch == "-"))
            if numeric {
                if !inNumber { out.append("#") }
                inNumber = true
            } else {
                inNumber = false
                out.append(ch)
            }
        }
        return out
    }
}
