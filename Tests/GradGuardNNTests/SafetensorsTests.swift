import Foundation
import GradGuard
import XCTest
import _TestSupport

final class SafetensorsTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("gg-st-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func testRoundTripWithMetadata() throws {
        let path = dir.appendingPathComponent("w.safetensors").path
        let tensors = ["a.weight": Tensor([[1, -2.5], [3, 4]]), "b": Tensor(7), "empty": Tensor.zeros([0, 3])]
        try Safetensors.write(tensors, to: path, metadata: ["format": "pt"])
        let (back, meta) = try Safetensors.readWithMetadata(path)
        XCTAssertEqual(meta, ["format": "pt"])
        XCTAssertEqual(Set(back.keys), Set(tensors.keys))
        for (k, t) in tensors {
            XCTAssertEqual(back[k]!.shape, t.shape)
            XCTAssertEqual(back[k]!.scalars, t.scalars)
        }
        // Header length is a multiple of 8 (alignment of the data section).
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        XCTAssertEqual(data.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } % 8, 0)
    }

    func testReadsDtypesWrittenByPyTorch() throws {
        let (t, meta) = try Safetensors.readWithMetadata(fixturePath("dtypes.safetensors"))
        XCTAssertEqual(meta["source"], "make_fixtures.py")
        let expected: [Float] = [0.5, -1.25, 3.0, 1e-3, 65504.0, -2.0]
        XCTAssertEqual(t["f32"]!.scalars, expected)
        XCTAssertEqual(t["f64"]!.scalars, expected)
        assertClose(t["f16"]!, Tensor(shape: [2, 3], scalars: expected), rtol: 1e-3, atol: 0)  // F16: 11-bit mantissa
        assertClose(t["bf16"]!, Tensor(shape: [2, 3], scalars: expected), rtol: 8e-3, atol: 0)  // BF16: 8-bit mantissa
        XCTAssertEqual(t["f16"]!.shape, [2, 3])
        XCTAssertEqual(t["i64"]!.scalars, [1, -2, 300000])
        XCTAssertEqual(t["scalar"]!.shape, [])
        XCTAssertEqual(t["scalar"]!.item, 7.5)
    }

    // MARK: Bad files

    private func file(_ bytes: Data) -> String {
        let path = dir.appendingPathComponent("bad-\(UUID().uuidString).safetensors").path
        _ = FileManager.default.createFile(atPath: path, contents: bytes)
        return path
    }

    private func build(header: String, dataBytes: Int, declaredLength: UInt64? = nil) -> Data {
        var d = Data()
        let h = Data(header.utf8)
        withUnsafeBytes(of: (declaredLength ?? UInt64(h.count)).littleEndian) { d.append(contentsOf: $0) }
        d.append(h)
        d.append(Data(repeating: 0, count: dataBytes))
        return d
    }

    private func expectFault(
        _ data: Data, tensor: String? = nil, _ check: (SafetensorsError.Fault) -> Bool,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        let path = self.file(data)
        XCTAssertThrowsError(try Safetensors.read(path), file: file, line: line) { error in
            guard let e = error as? SafetensorsError else { return XCTFail("untyped error \(error)", file: file, line: line) }
            XCTAssertEqual(e.file, path, file: file, line: line)
            XCTAssertEqual(e.tensor, tensor, "\(e)", file: file, line: line)
            XCTAssertTrue(check(e.fault), "unexpected fault: \(e)", file: file, line: line)
            XCTAssertTrue(e.description.contains(path), file: file, line: line)
        }
    }

    func testTruncatedData() {
        let good = Safetensors.encode(["w": Tensor([1, 2, 3, 4])])
        expectFault(good.prefix(good.count - 3), tensor: "w") {
            if case .offsetsOutOfRange = $0 { return true } else { return false }
        }
    }

    func testTooSmallAndHeaderBeyondFile() {
        expectFault(Data([1, 2, 3])) { $0 == .fileTooSmall(size: 3) }
        expectFault(build(header: "{}", dataBytes: 0, declaredLength: 1000)) {
            $0 == .headerLengthBeyondFile(headerLength: 1000, fileSize: 10)
        }
        expectFault(build(header: "{}", dataBytes: 0, declaredLength: UInt64.max)) {
            $0 == .headerTooLarge(headerLength: UInt64.max)
        }
    }

    func testMalformedJSON() {
        expectFault(build(header: "{\"w\": {\"dtype\": ", dataBytes: 0)) {
            if case .malformedHeader = $0 { return true } else { return false }
        }
        expectFault(build(header: "[1, 2]", dataBytes: 0)) {
            if case .malformedHeader = $0 { return true } else { return false }
        }
        expectFault(build(header: #"{"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}}"#, dataBytes: 4), tensor: "w") {
            if case .malformedHeader = $0 { return true } else { return false }
        }
        expectFault(build(header: #"{"w": {"dtype": "F32", "shape": [1]}}"#, dataBytes: 4), tensor: "w") {
            if case .malformedHeader = $0 { return true } else { return false }
        }
    }

    func testOffsetsOutOfRangeAndOverlapping() {
        expectFault(build(header: #"{"w": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}"#, dataBytes: 8), tensor: "w") {
            $0 == .offsetsOutOfRange(begin: 4, end: 12, dataSize: 8)
        }
        expectFault(build(header: #"{"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}}"#, dataBytes: 8), tensor: "w") {
            if case .offsetsOutOfRange = $0 { return true } else { return false }
        }
        expectFault(
            build(
                header: #"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}"#,
                dataBytes: 12), tensor: "b"
        ) { $0 == .overlappingOffsets(other: "a") }
        expectFault(build(header: #"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}"#, dataBytes: 8)) {
            $0 == .uncoveredBytes(from: 4, to: 8)
        }
    }

    func testShapeByteCountMismatchAndUnknownDtype() {
        expectFault(build(header: #"{"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}"#, dataBytes: 8), tensor: "w") {
            $0 == .shapeByteCountMismatch(shape: [3], dtype: "F32", expectedBytes: 12, foundBytes: 8)
        }
        expectFault(build(header: #"{"w": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}}"#, dataBytes: 8), tensor: "w") {
            $0 == .unknownDtype("Q4")
        }
        expectFault(build(header: #"{"w": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 8]}}"#, dataBytes: 8), tensor: "w") {
            if case .invalidShape = $0 { return true } else { return false }
        }
        expectFault(build(header: #"{"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}"#, dataBytes: 8), tensor: "w") {
            $0 == .invalidShape([-2])
        }
    }

    func testMissingFileIsATypedError() {
        XCTAssertThrowsError(try Safetensors.read(dir.appendingPathComponent("nope.safetensors").path)) { e in
            guard case .cannotRead = (e as? SafetensorsError)?.fault else { return XCTFail("\(e)") }
        }
    }

    func testFailedWriteLeavesTheExistingFileIntact() throws {
        let path = dir.appendingPathComponent("keep.safetensors").path
        try Safetensors.write(["w": Tensor([1, 2])], to: path)
        // The write fails at the very path it would replace (a file-size limit: as a full disk).
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        try withFileSizeLimit(4096) {
            XCTAssertThrowsError(try Safetensors.write(["w": Tensor.ones([4096])], to: path)) { XCTAssertTrue("\($0)".contains("File too large"), "\($0)") }
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), before)
        XCTAssertEqual(try Safetensors.read(path)["w"]?.scalars, [1, 2])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains(".tmp-") }, [])
    }

    /// The header is checked before the data: tensors that would take more memory as Float32
    /// than allowed are refused, in a file that is mostly a hole (no disk, no reading).
    func testTensorsBeyondTheMemoryLimitAreRefusedFromTheHeader() throws {
        let path = dir.appendingPathComponent("huge.safetensors").path
        var header = Data(#"{"w":{"dtype":"F32","shape":[268435456],"data_offsets":[0,1073741824]}}"#.utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        var file = Data()
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(header)
        try file.write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(truncate(path, off_t(file.count + (1 << 30))), 0)
        XCTAssertThrowsError(try Safetensors.readWithMetadata(path, maxTensorBytes: 1 << 20)) {
            guard case .tooLarge = ($0 as? SafetensorsError)?.fault else { return XCTFail("\($0)") }
        }
    }
}
