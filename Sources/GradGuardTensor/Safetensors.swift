import Foundation
import Glibc

/// A fault in a safetensors file, naming the file, the tensor (when one is concerned) and
/// what was expected.
public struct SafetensorsError: Error, CustomStringConvertible, Equatable {
    /// What is wrong with the file.
    public enum Fault: Equatable, Sendable {
        case cannotRead(String)
        case cannotWrite(String)
        case fileTooSmall(size: Int)
        case headerLengthBeyondFile(headerLength: UInt64, fileSize: Int)
        case headerTooLarge(headerLength: UInt64)
        case malformedHeader(String)
        case unknownDtype(String)
        case invalidShape([Int])
        case shapeByteCountMismatch(shape: [Int], dtype: String, expectedBytes: Int, foundBytes: Int)
        case offsetsOutOfRange(begin: Int, end: Int, dataSize: Int)
        case overlappingOffsets(other: String)
        case uncoveredBytes(from: Int, to: Int)
        case tooLarge(bytes: Int, limit: Int)
    }

    /// The file.
    public let file: String
    /// The tensor concerned, when one is.
    public let tensor: String?
    /// What is wrong.
    public let fault: Fault

    /// The file, the tensor and the fault in one sentence.
    public var description: String {
        let subject = tensor.map { "\(file): tensor '\($0)'" } ?? file
        switch fault {
        case .cannotRead(let why): return "\(subject): cannot read: \(why)"
        case .cannotWrite(let why): return "\(subject): cannot write: \(why)"
        case .fileTooSmall(let size): return "\(subject): \(size) bytes is too small for a safetensors file (8-byte header length expected)"
        case let .headerLengthBeyondFile(n, size): return "\(subject): header length \(n) runs past the end of the \(size)-byte file"
        case .headerTooLarge(let n): return "\(subject): header length \(n) exceeds the \(Safetensors.maxHeaderLength)-byte limit"
        case .malformedHeader(let why): return "\(subject): malformed JSON header: \(why)"
        case .unknownDtype(let d): return "\(subject): unknown dtype '\(d)' (expected F32, F16, BF16, F64, I64, I32, I16, I8, U8 or BOOL)"
        case .invalidShape(let s): return "\(subject): invalid shape \(s)"
        case let .shapeByteCountMismatch(shape, dtype, e, f): return "\(subject): shape \(shape) of \(dtype) needs \(e) bytes but data_offsets span \(f)"
        case let .offsetsOutOfRange(b, e, size): return "\(subject): data_offsets [\(b), \(e)] are outside the \(size)-byte data section"
        case .overlappingOffsets(let other): return "\(subject): data overlaps tensor '\(other)'"
        case let .uncoveredBytes(from, to): return "\(subject): bytes \(from)..<\(to) of the data section belong to no tensor"
        case let .tooLarge(b, l):
            return
                "\(subject): its tensors take \(FileContents.byteCount(b)) as Float32, more than the \(FileContents.byteCount(l)) limit (half this machine's memory)"
        }
    }
}

/// Reads and writes the safetensors format: an 8-byte little-endian header length, a JSON
/// header mapping names to `dtype`, `shape` and `data_offsets` (plus optional
/// `__metadata__` of strings), then the raw little-endian data. Files written by
/// `safetensors.torch.save_file` load here, and files written here load there.
public enum Safetensors {
    /// The largest header accepted, as in the reference implementation (100 MB).
    public static let maxHeaderLength: UInt64 = 100_000_000

    static let dtypeSizes: [String: Int] = [
        "F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4,
        "I16": 2, "I8": 1, "U8": 1, "BOOL": 1
    ]

    /// Reads every tensor of the file at `path`, converting to Float32.
    public static func read(_ path: String) throws -> [String: Tensor] {
        try readWithMetadata(path).tensors
    }

    /// Reads every tensor and the `__metadata__` strings. The file is mapped, not read: its
    /// header is checked (lengths, offsets, and the memory the tensors take as Float32 against
    /// `maxTensorBytes`, half this machine's memory by default) before any byte of the data
    /// section is touched, so a huge or lying file is refused at the cost of its header.
    public static func readWithMetadata(_ path: String, maxTensorBytes: Int? = nil) throws -> (tensors: [String: Tensor], metadata: [String: String]) {
        let fd: Int32, size: Int
        do { (fd, size) = try FileContents.openRegular(path, limit: Int.max) } catch let e as FileReadFailure {
            throw SafetensorsError(file: path, tensor: nil, fault: .cannotRead(e.reason))
        }
        defer { close(fd) }
        guard size > 0 else { return try decode(Data(), file: path, maxTensorBytes: maxTensorBytes) }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw SafetensorsError(file: path, tensor: nil, fault: .cannotRead(String(cString: strerror(errno))))
        }
        let data = Data(bytesNoCopy: base, count: size, deallocator: .custom { p, n in munmap(p, n) })
        return try decode(data, file: path, maxTensorBytes: maxTensorBytes)
    }

    /// Half the machine's memory: the default ceiling on the tensors of one file.
    public static var defaultMaxTensorBytes: Int { Int(clamping: ProcessInfo.processInfo.physicalMemory / 2) }

    /// Decodes a safetensors image held in memory; `file` names it in errors.
    public static func decode(_ data: Data, file: String = "<memory>", maxTensorBytes: Int? = nil) throws -> (
        tensors: [String: Tensor], metadata: [String: String]
    ) {
        func fail(_ f: SafetensorsError.Fault, _ tensor: String? = nil) -> SafetensorsError {
            SafetensorsError(file: file, tensor: tensor, fault: f)
        }
        guard data.count >= 8 else { throw fail(.fileTooSmall(size: data.count)) }
        let headerLength = data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self)) }
        guard headerLength <= maxHeaderLength else { throw fail(.headerTooLarge(headerLength: headerLength)) }
        guard headerLength <= UInt64(data.count - 8) else {
            throw fail(.headerLengthBeyondFile(headerLength: headerLength, fileSize: data.count))
        }
        let start = data.startIndex
        let headerData = data[(start + 8)..<(start + 8 + Int(headerLength))]
        let json: JSONValue
        do {
            json = try JSONDecoder().decode(JSONValue.self, from: headerData)
        } catch {
            throw fail(.malformedHeader("not valid JSON"))
        }
        guard case .object(let header) = json else { throw fail(.malformedHeader("the top level is not an object")) }
        let dataStart = 8 + Int(headerLength)
        let dataSize = data.count - dataStart

        var metadata: [String: String] = [:]
        struct Entry { let name: String; let dtype: String; let shape: [Int]; let begin: Int; let end: Int }
        var entries: [Entry] = []
        for (name, value) in header {
            if name == "__metadata__" {
                guard case .object(let m) = value else { throw fail(.malformedHeader("__metadata__ is not an object")) }
                for (k, v) in m {
                    guard case .string(let s) = v else { throw fail(.malformedHeader("__metadata__ value of '\(k)' is not a string")) }
                    metadata[k] = s
                }
                continue
            }
            guard case .object(let info) = value else { throw fail(.malformedHeader("entry is not an object"), name) }
            guard case .string(let dtype)? = info["dtype"] else { throw fail(.malformedHeader("missing string 'dtype'"), name) }
            guard let size = dtypeSizes[dtype] else { throw fail(.unknownDtype(dtype), name) }
            guard let shape = info["shape"]?.integers else {
                throw fail(.malformedHeader("'shape' must be an array of integers"), name)
            }
            guard let offsets = info["data_offsets"]?.integers, offsets.count == 2 else {
                throw fail(.malformedHeader("'data_offsets' must be two integers"), name)
            }
            guard shape.allSatisfy({ $0 >= 0 }) else { throw fail(.invalidShape(shape), name) }
            var elements = 1
            for d in shape {
                let (p, overflow) = elements.multipliedReportingOverflow(by: d)
                guard !overflow else { throw fail(.invalidShape(shape), name) }
                elements = p
            }
            let (bytes, overflow) = elements.multipliedReportingOverflow(by: size)
            guard !overflow else { throw fail(.invalidShape(shape), name) }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin >= 0, end >= begin, end <= dataSize else {
                throw fail(.offsetsOutOfRange(begin: begin, end: end, dataSize: dataSize), name)
            }
            guard end - begin == bytes else {
                throw fail(.shapeByteCountMismatch(shape: shape, dtype: dtype, expectedBytes: bytes, foundBytes: end - begin), name)
            }
            entries.append(Entry(name: name, dtype: dtype, shape: shape, begin: begin, end: end))
        }
        // The data section must be covered exactly once, in order.
        entries.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        var covered = 0
        var previous: String? = nil
        for e in entries {
            if e.begin < covered, let previous { throw fail(.overlappingOffsets(other: previous), e.name) }
            if e.begin > covered { throw fail(.uncoveredBytes(from: covered, to: e.begin), e.name) }
            covered = Swift.max(covered, e.end)
            if e.end > e.begin { previous = e.name }
        }
        if covered < dataSize { throw fail(.uncoveredBytes(from: covered, to: dataSize)) }
        // Every tensor becomes Float32: a file of small types (or a lying header) may ask for
        // more than its own size.
        let limit = maxTensorBytes ?? defaultMaxTensorBytes
        let floats = entries.reduce(0) { $0 + ($1.end - $1.begin) / (dtypeSizes[$1.dtype] ?? 1) }
        guard floats <= limit / 4 else { throw fail(.tooLarge(bytes: floats * 4, limit: limit)) }

        var tensors: [String: Tensor] = [:]
        data.withUnsafeBytes { raw in
            for e in entries {
                let bytes = UnsafeRawBufferPointer(rebasing: raw[(dataStart + e.begin)..<(dataStart + e.end)])
                tensors[e.name] = Tensor(shape: e.shape, scalars: convert(bytes, dtype: e.dtype))
            }
        }
        return (tensors, metadata)
    }

    private static func convert(_ b: UnsafeRawBufferPointer, dtype: String) -> [Float] {
        func load<T>(_ type: T.Type, _ f: (T) -> Float) -> [Float] {
            let n = b.count / MemoryLayout<T>.size
            return (0..<n).map { f(b.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self)) }
        }
        switch dtype {
        case "F32": return load(UInt32.self) { Float(bitPattern: UInt32(littleEndian: $0)) }
        case "F64": return load(UInt64.self) { Float(Double(bitPattern: UInt64(littleEndian: $0))) }
        case "F16": return load(UInt16.self) { Float(Float16(bitPattern: UInt16(littleEndian: $0))) }
        case "BF16": return load(UInt16.self) { Float(bitPattern: UInt32(UInt16(littleEndian: $0)) << 16) }
        case "I64": return load(Int64.self) { Float(Int64(littleEndian: $0)) }
        case "I32": return load(Int32.self) { Float(Int32(littleEndian: $0)) }
        case "I16": return load(Int16.self) { Float(Int16(littleEndian: $0)) }
        case "I8": return load(Int8.self) { Float($0) }
        case "U8", "BOOL": return load(UInt8.self) { Float($0) }
        default: return []
        }
    }

    /// Encodes tensors as F32 safetensors bytes, names sorted, header padded with spaces
    /// to a multiple of 8 bytes.
    public static func encode(_ tensors: [String: Tensor], metadata: [String: String]? = nil) -> Data {
        var header: [String: Any] = [:]
        var offset = 0
        let names = tensors.keys.sorted()
        for name in names {
            let t = tensors[name]!
            header[name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + 4 * t.count]] as [String: Any]
            offset += 4 * t.count
        }
        if let metadata { header["__metadata__"] = metadata }
        var json = (try? JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])) ?? Data("{}".utf8)
        while json.count % 8 != 0 { json.append(0x20) }
        var out = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        for name in names {
            tensors[name]!.scalars.withUnsafeBufferPointer { buf in
                var le = [UInt32](repeating: 0, count: buf.count)
                for i in 0..<buf.count { le[i] = buf[i].bitPattern.littleEndian }
                le.withUnsafeBytes { out.append(contentsOf: $0) }
            }
        }
        return out
    }

    /// Writes tensors to `path` as F32 safetensors. The file is written to a temporary
    /// name and renamed, so an existing file is replaced whole or not at all.
    public static func write(_ tensors: [String: Tensor], to path: String, metadata: [String: String]? = nil) throws {
        do { try AtomicFile.write(encode(tensors, metadata: metadata), to: path) } catch {
            throw SafetensorsError(file: path, tensor: nil, fault: .cannotWrite(AtomicFile.reason(error)))
        }
    }
}
