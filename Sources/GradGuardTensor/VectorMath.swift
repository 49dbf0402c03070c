import CGradGuardKernels
import Glibc

// Vectorised exp, tanh and sigmoid on SIMD8<Float>, so that no hot loop calls scalar
// libm once per element.
//
// exp: Cody–Waite range reduction x = n·ln2 + r with ln2 split in two parts, then the
// degree-6 minimax polynomial of Cephes `expf` (S. L. Moshier, Cephes Math Library),
// and 2^n built in the exponent bits. Max relative error ≈ 2 ulp on [-87, 88].
// tanh: Cephes `tanhf` polynomial for |x| < 0.625, and 1 − 2/(e^{2|x|}+1) above.

typealias F8 = SIMD8<Float>

enum VectorMath {
    @inline(__always)
    static func exp(_ x: F8) -> F8 {
        let hi: Float = 88.72283
        let lo: Float = -87.33654  // below this the result is sub-normal: flushed to 0
        var xc = x.replacing(with: hi, where: x .> hi)
        xc = xc.replacing(with: lo, where: xc .< lo)
        xc.replace(with: 0, where: xc .!= xc)  // NaN lanes computed as 0, restored below
        // Round x·log₂e to the nearest integer by adding 1.5·2²³: the sum's low mantissa bits
        // then hold n as an integer, which also gives 2^n without a float-to-int conversion.
        let magic = F8(repeating: 12_582_912)
        let shifted = xc * 1.44269504088896341 + magic
        let n = shifted - magic
        var r = xc - n * 0.693359375
        r = r + n * 2.12194440e-4
        let r2 = r * r
        var p: F8 = F8(repeating: 1.9875691500e-4)
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        p = p * r2 + r + 1
        // 2^n via the exponent field; n is in [-126, 128]: split 2^n = 2^(n/2)·2^(n-n/2) so 128 does not overflow the field.
        let ni = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- unsafeBitCast(magic, to: SIMD8<Int32>.self)
        let h = ni &>> 1
        let s1 = unsafeBitCast(SIMD8<UInt32>(truncatingIfNeeded: (h &+ 127) &<< 23), to: F8.self)
        let s2 = unsafeBitCast(SIMD8<UInt32>(truncatingIfNeeded: (ni &- h &+ 127) &<< 23), to: F8.self)
        var y = p * s1 * s2
        y.replace(with: Float.infinity, where: x .> hi)
        y.replace(with: 0, where: x .< lo)
        y.replace(with: x, where: x .!= x)  // NaN in, NaN out
        return y
    }

    @inline(__always)
    static func sigmoid(_ x: F8) -> F8 {
        1 / (1 + exp(-x))
    }

    @inline(__always)
    static func tanh(_ x: F8) -> F8 {
        let ax = unsafeBitCast(unsafeBitCast(x, to: SIMD8<UInt32>.self) & 0x7fff_ffff, to: F8.self)
        // Large |x|: 1 - 2/(e^{2|x|}+1), with the sign of x.
        let e = exp(2 * ax)
        var big = 1 - 2 / (e + 1)
        big.replace(with: 1, where: ax .> 9)
        big = big.replacing(with: -big, where: x .< 0)
        // Small |x|: odd polynomial.
        let z = x * x
        var p = F8(repeating: -5.70498872745e-3)
        p = p * z + 2.06390887954e-2
        p = p * z - 5.37397155531e-2
        p = p * z + 1.33314422036e-1
        p = p * z - 3.33332819422e-1
        let small = x + x * z * p
        var y = big.replacing(with: small, where: ax .< 0.625)
        y.replace(with: x, where: x .!= x)
        return y
    }

    /// Eight values from `p + k`.
    @inline(__always)
    static func load(_ p: UnsafePointer<Float>, _ k: Int) -> F8 { UnsafeRawPointer(p + k).loadUnaligned(as: F8.self) }
    @inline(__always)
    static func load(_ p: UnsafeMutablePointer<Float>, _ k: Int) -> F8 { UnsafeRawPointer(p + k).loadUnaligned(as: F8.self) }
    /// Stores eight values at `p + k`.
    @inline(__always)
    static func store(_ p: UnsafeMutablePointer<Float>, _ k: Int, _ v: F8) {
        UnsafeMutableRawPointer(p + k).storeBytes(of: v, as: F8.self)
    }

    /// Applies one of the vectorised functions in place to `count` values at `p`.
    @inline(__always)
    static func apply(_ p: UnsafeMutablePointer<Float>, _ count: Int, _ op: VectorOp) {
        apply(UnsafeBufferPointer(start: p, count: count), UnsafeMutableBufferPointer(start: p, count: count), 0..<count, op)
    }

    /// Applies one of the vectorised functions to `src[range]`, writing `dst[range]` (the
    /// two may be the same memory). Each function has its own loop so that it is inlined.
    @inline(__always)
    static func apply(
        _ src: UnsafeBufferPointer<Float>, _ dst: UnsafeMutableBufferPointer<Float>,
        _ range: Range<Int>, _ op: VectorOp
    ) {
        let level = Kernels.level
        if level > .portable {
            let x = src.baseAddress! + range.lowerBound, y = dst.baseAddress! + range.lowerBound, n = range.count
            switch op {
            case .exp: gg_vexp(level.cValue, x, y, n)
            case .sigmoid: gg_vsigmoid(level.cValue, x, y, n)
            case .tanh: gg_vtanh(level.cValue, x, y, n)
            }
            return
        }
        switch op {
        case .exp: loop(src, dst, range) { exp($0) }
        case .sigmoid: loop(src, dst, range) { sigmoid($0) }
        case .tanh: loop(src, dst, range) { tanh($0) }
        }
    }

    @inline(__always)
    private static func loop(
        _ src: UnsafeBufferPointer<Float>, _ dst: UnsafeMutableBufferPointer<Float>,
        _ range: Range<Int>, _ f: (F8) -> F8
    ) {
        var i = range.lowerBound
        let end = range.upperBound
        let s = src.baseAddress!, d = dst.baseAddress!
        while i + 8 <= end {
            let v = UnsafeRawPointer(s + i).loadUnaligned(as: F8.self)
            UnsafeMutableRawPointer(d + i).storeBytes(of: f(v), as: F8.self)
            i += 8
        }
        if i < end {
            var v = F8(repeating: 0)
            for k in 0..<(end - i) { v[k] = s[i + k] }
            let r = f(v)
            for k in 0..<(end - i) { d[i + k] = r[k] }
        }
    }
}

/// The vectorised element-wise functions.
enum VectorOp { case exp, sigmoid, tanh }

extension Tensor {
    /// Applies a vectorised function to every value.
    func mapSIMD(_ op: VectorOp) -> Tensor {
        Tensor(
            shape: shape,
            uninitialized: { out in
                scalars.withUnsafeBufferPointer { src in
                    parallelFor(src.count) { r in VectorMath.apply(src, out, r, op) }
                }
            })
    }
}
