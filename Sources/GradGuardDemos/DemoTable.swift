import Foundation

/// A demo's table: its caption, header and rows of cells. Over several seeds the tables are
/// folded cell by cell: numbers become "median [min – max]", yes/no the count of yes, any
/// other text the first seed's.
struct DemoTable {
    var caption: String
    var header: String
    var rows: [[String]]

    /// One row's cells from a Markdown row "| a | b |".
    static func cells(_ row: String) -> [String] {
        let inner = row.trimmingCharacters(in: .whitespaces).dropFirst().dropLast()
        return inner.components(separatedBy: " | ").map { $0.trimmingCharacters(in: .whitespaces) }
    }

    /// The number a cell starts with ("0.1585", "NaN (diverged)", "12"), and the rest; a
    /// cell that starts with "diverged" is NaN.
    static func number(_ cell: String) -> (value: Double, decimals: Int, rest: String)? {
        if cell.hasPrefix("diverged") { return (.nan, 0, "(diverged)") }
        let token = cell.split(separator: " ", maxSplits: 1).first.map(String.init) ?? ""
        let rest = cell.dropFirst(token.count).trimmingCharacters(in: .whitespaces)
        guard rest.isEmpty || (rest.hasPrefix("(") && rest.hasSuffix(")")) else { return nil }
        if token == "NaN" { return (.nan, 0, rest) }
        guard let v = Double(token) else { return nil }
        let decimals = token.split(separator: ".").dropFirst().first.map { $0.prefix { $0.isNumber }.count } ?? 0
        return (v, decimals, rest)
    }

    /// The tables of several seeds folded into one.
    static func folded(_ tables: [DemoTable]) -> DemoTable {
        guard let first = tables.first, tables.count > 1 else { return tables.first ?? DemoTable(caption: "", header: "", rows: []) }
        var rows: [[String]] = []
        for (i, row) in first.rows.enumerated() {
            var out: [String] = []
            for (j, cell) in row.enumerated() {
                let column = tables.compactMap { $0.rows.indices.contains(i) && $0.rows[i].indices.contains(j) ? $0.rows[i][j] : nil }
                out.append(fold(column, first: cell))
            }
            rows.append(out)
        }
        return DemoTable(caption: first.caption + "; \(tables.count) seeds: median [min – max]", header: first.header, rows: rows)
    }

    static func fold(_ column: [String], first: String) -> String {
        if Set(column).count == 1 { return first }
        if column.allSatisfy({ $0 == "yes" || $0 == "no" }) { return "\(column.filter { $0 == "yes" }.count)/\(column.count) yes" }
        let numbers = column.compactMap(number)
        guard numbers.count == column.count else { return first }
        if numbers.allSatisfy({ $0.value.isNaN }) { return "diverged (\(column.count)/\(column.count) seeds)" }
        // NaN (a diverged run) sorts above every number: it is the worst outcome.
        let sorted = numbers.map(\.value).sorted { a, b in a.isNaN ? false : b.isNaN ? true : a < b }
        let median = sorted[(sorted.count - 1) / 2]
        let decimals = numbers.map(\.decimals).max() ?? 0
        func f(_ v: Double) -> String { v.isNaN ? "NaN" : String(format: "%.\(decimals)f", v) }
        // Details in parentheses are kept when every seed gave the same; otherwise only the
        // count of diverged seeds is.
        let rests = Set(numbers.map(\.rest))
        var suffix = ""
        if rests.count == 1, let r = rests.first, !r.isEmpty {
            suffix = " " + r
        } else if case let d = numbers.filter({ $0.value.isNaN }).count, d > 0 {
            suffix = " (\(d)/\(column.count) diverged)"
        }
        return "\(f(median)) [\(f(sorted.first!)) – \(f(sorted.last!))]" + suffix
    }

    func print(runsDirectory: String) {
        Swift.print("\n" + caption)
        Swift.print("| \(header) |")
        Swift.print("|" + String(repeating: "---|", count: header.components(separatedBy: " | ").count))
        for r in rows { Swift.print("| " + r.joined(separator: " | ") + " |") }
        Swift.print("\nruns and reports: \(runsDirectory)/")
    }
}
