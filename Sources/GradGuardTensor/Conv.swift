// MARK: - 2-D convolution (im2col + GEMM) on NCHW tensors

/// Geometry of a 2-D convolution or pooling window.
struct Window2D {
    let kh, kw, sh, sw, ph, pw, dh, dw: Int

    func outputSize(h: Int, w: Int) -> (Int, Int) {
        ((h + 2 * ph - dh * (kh - 1) - 1) / sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) / sw + 1)
    }
}

extension Tensor {
    /// Cross-correlation of an NCHW input with `weight` `[out, in/groups, kh, kw]`, as
    /// `torch.nn.functional.conv2d`. Each group is one GEMM over the whole batch,
    /// `W_g · im2col(x_g)`; a 1×1 kernel with stride 1 and no padding skips the index
    /// arithmetic of im2col (its columns are the input's channels).
    public func conv2d(weight: Tensor, bias: Tensor? = nil, stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                       dilation: (Int, Int) = (1, 1), groups: Int = 1) -> Tensor {
        let x = self
        precondition(x.rank == 4 && weight.rank == 4, "conv2d: input \(x.shape) and weight \(weight.shape) must be 4-D")
        let (n, cin, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (cout, cg, kh, kw) = (weight.shape[0], weight.shape[1], weight.shape[2], weight.shape[3])
        precondition(cin % groups == 0 && cout % groups == 0 && cg == cin / groups,
                     "conv2d: \(cin) input channels, weight \(weight.shape) and \(groups) groups do not agree")
        if let bias { precondition(bias.shape == [cout], "conv2d: bias \(bias.shape) is not [\(cout)]") }
        let win = Window2D(kh: kh, kw: kw, sh: stride.0, sw: stride.1, ph: padding.0, pw: padding.1,
                           dh: dilation.0, dw: dilation.1)
        let (oh, ow) = win.outputSize(h: h, w: w)
        precondition(oh > 0 && ow > 0, "conv2d: input \(h)×\(w) is smaller than the kernel")
        let coutg = cout / groups, rowsPerGroup = cg * kh * kw, cols = n * oh * ow
        // im2col for every group: [groups][cg·kh·kw, n·oh·ow]
        let colBuffers: [[Float]] = (0..<groups).map { g in
            x.scalars.withUnsafeBufferPointer { px in
                im2col(px, n: n, c: cin, h: h, w: w, channelOffset: g * cg, channels: cg, win: win, oh: oh, ow: ow)
            }
        }
        // Y [cout, n·oh·ow], one GEMM per group.
        var ymat = [Float](unsafeUninitializedCapacity: cout * cols) { _, count in count = cout * cols }  // written by the GEMMs
        weight.scalars.withUnsafeBufferPointer { pw in
            ymat.withUnsafeMutableBufferPointer { py in
                for g in 0..<groups {
                    colBuffers[g].withUnsafeBufferPointer { pc in
                        sgemm(transA: false, transB: false, m: coutg, n: cols, k: rowsPerGroup,
                              a: pw.baseAddress! + g * coutg * rowsPerGroup, b: pc.baseAddress!,
                              c: py.baseAddress! + g * coutg * cols)
                    }
                }
            }
        }
        let hw = oh * ow
        let out = Tensor(shape: [n, cout, oh, ow], uninitialized: { dst in
            ymat.withUnsafeBufferPointer { py in
                let b = bias?.scalars
                parallelFor(cout, grain: 1) { range in
                    for co in range {
                        let add = b?[co] ?? 0
                        for img in 0..<n {
                            let src = py.baseAddress! + co * cols + img * hw, d = dst.baseAddress! + (img * cout + co) * hw
                            for p in 0..<hw { d[p] = src[p] + add }
                        }
                    }
                }
            }
        })
        let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
        return Tensor.record("conv2d", out, inputs) { g in
            // dY as [cout, n·oh·ow]
            var dy = [Float](unsafeUninitializedCapacity: cout * cols) { _, count in count = cout * cols }  // written below
            g.scalars.withUnsafeBufferPointer { pg in
                dy.withUnsafeMutableBufferPointer { d in
                    parallelFor(cout, grain: 1) { range in
                        for co in range {
                            for img in 0..<n {
                                let src = pg.baseAddress! + (img * cout + co) * hw, t = d.baseAddress! + co * cols + img * hw
                                for p in 0..<hw { t[p] = src[p] }
                            }
                        }
                    }
                }
            }
            var gx: Tensor? = nil, gw: Tensor? = nil, gb: Tensor? = nil
            dy.withUnsafeBufferPointer { pdy in
                if weight.requiresGrad {
                    gw = Tensor(shape: weight.shape, uninitialized: { dst in
                        for grp in 0..<groups {
                            colBuffers[grp].withUnsafeBufferPointer { pc in
                                sgemm(transA: false, transB: true, m: coutg, n: rowsPerGroup, k: cols,
                                      a: pdy.baseAddress! + grp * coutg * cols, b: pc.baseAddress!,
                                      c: dst.baseAddress! + grp * coutg * rowsPerGroup)
                            }
                        }
                    })
                }
                if x.requiresGrad {
                    gx = Tensor(shape: x.shape, uninitialized: { dst in
                        dst.initialize(repeating: 0)
                        var dcols = [Float](unsafeUninitializedCapacity: rowsPerGroup * cols) { _, count in count = rowsPerGroup * cols }
                        weight.scalars.withUnsafeBufferPointer { pw in
                            for grp in 0..<groups {
                                dcols.withUnsafeMutableBufferPointer { pd in
                                    sgemm(transA: true, transB: false, m: rowsPerGroup, n: cols, k: coutg,
                                          a: pw.baseAddress! + grp * coutg * rowsPerGroup,
                                          b: pdy.baseAddress! + grp * coutg * cols, c: pd.baseAddress!)
                                }
                                dcols.withUnsafeBufferPointer { pd in
                                    col2im(pd, into: dst, n: n, c: cin, h: h, w: w, channelOffset: grp * cg,
                                           channels: cg, win: win, oh: oh, ow: ow)
                                }
                            }
                        }
                    })
                }
                if let bias, bias.requiresGrad {
                    gb = Tensor(shape: [cout], uninitialized: { dst in
                        for co in 0..<cout {
                            let row = pdy.baseAddress! + co * cols
                            var s: Float = 0
                            for j in 0..<cols { s += row[j] }
                            dst[co] = s
                        }
                    })
                }
            }
            return [gx, gw, gb]
        }
    }
}

/// The output columns `xo` whose input column `xo·stride + offset` lies inside `0..<width`.
@inline(__always)
func validColumns(offset: Int, stride: Int, width: Int, outWidth: Int) -> Range<Int> {
    let lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride
    let last = width - 1 - offset
    let hi = last < 0 ? 0 : Swift.min(outWidth, last / stride + 1)
    return lo..<Swift.max(lo, hi)
}

/// Columns of one channel group: row (c, i, j) holds, for every output position of every
/// image, the input value under kernel tap (i, j) of channel c (0 in the padding).
func im2col(_ x: UnsafeBufferPointer<Float>, n: Int, c: Int, h: Int, w: Int, channelOffset: Int, channels: Int,
            win: Window2D, oh: Int, ow: Int) -> [Float] {
    let rows = channels * win.kh * win.kw, cols = n * oh * ow
    let plain = win.kh == 1 && win.kw == 1 && win.sh == 1 && win.sw == 1 && win.ph == 0 && win.pw == 0
    return [Float](unsafeUninitializedCapacity: rows * cols) { out, count in
        let xs = x.baseAddress!, os = out.baseAddress!
        let (kh, kw, sh, sw, ph, dh, dw) = (win.kh, win.kw, win.sh, win.sw, win.ph, win.dh, win.dw)
        let pw = win.pw
        parallelFor(rows, grain: 1) { range in
            for r in range {
                let ch = r / (kh * kw), ki = (r / kw) % kh, kj = r % kw
                let xoff = kj &* dw &- pw
                let valid = validColumns(offset: xoff, stride: sw, width: w, outWidth: ow)
                let lo = valid.lowerBound, hi = valid.upperBound
                for img in 0..<n {
                    let src = xs + (img * c + channelOffset + ch) * h * w
                    let dstBase = os + r * cols + img * oh * ow
                    if plain {
                        dstBase.update(from: src, count: h * w)
                        continue
                    }
                    // Rows are short (a feature map's width): plain loops, which vectorise,
                    // beat a memmove call per row.
                    var d = dstBase
                    for y in 0..<oh {
                        let iy = y &* sh &- ph &+ ki &* dh
                        if iy < 0 || iy >= h {
                            for xo in 0..<ow { d[xo] = 0 }
                        } else {
                            let row = src + (iy &* w &+ xoff)
                            for xo in 0..<lo { d[xo] = 0 }
                            if sw == 1 {
                                let dd = d + lo, rr = row + lo
                                for j in 0..<(hi &- lo) { dd[j] = rr[j] }
                            } else if sw == 2 {
                                // Even lanes of sixteen consecutive inputs, eight outputs at a time,
                                // as long as all sixteen lie inside this input row.
                                var xo = lo
                                let rowEnd = w &- xoff
                                while xo &+ 8 <= hi && 2 &* xo &+ 16 <= rowEnd {
                                    let v = UnsafeRawPointer(row + 2 &* xo).loadUnaligned(as: SIMD16<Float>.self)
                                    UnsafeMutableRawPointer(d + xo).storeBytes(of: v.evenHalf, as: SIMD8<Float>.self)
                                    xo &+= 8
                                }
                                while xo < hi { d[xo] = row[2 &* xo]; xo &+= 1 }
                            } else {
                                var xo = lo
                                while xo < hi { d[xo] = row[xo &* sw]; xo &+= 1 }
                            }
                            for xo in hi..<ow { d[xo] = 0 }
                        }
                        d += ow
                    }
                }
            }
        }
        count = rows * cols
    }
}

#if _endian(little)
let littleEndian = true
#else
let littleEndian = false
#endif

/// The adjoint of `im2col`: adds each column entry back to the input position it came from.
func col2im(_ cols: UnsafeBufferPointer<Float>, into dx: UnsafeMutableBufferPointer<Float>, n: Int, c: Int, h: Int, w: Int,
            channelOffset: Int, channels: Int, win: Window2D, oh: Int, ow: Int) {
    let ncols = n * oh * ow
    let cs = cols.baseAddress!, ds = dx.baseAddress!
    // Parallel over channels: every row of channel ch writes only into channel ch.
    parallelFor(channels, grain: 1) { range in
        for ch in range {
            for ki in 0..<win.kh {
                for kj in 0..<win.kw {
                    let r = (ch * win.kh + ki) * win.kw + kj
                    let xoff = kj * win.dw - win.pw
                    let valid = validColumns(offset: xoff, stride: win.sw, width: w, outWidth: ow)
                    for img in 0..<n {
                        let dst = ds + (img * c + channelOffset + ch) * h * w
                        let srcBase = cs + r * ncols + img * oh * ow
                        for y in 0..<oh {
                            let iy = y * win.sh - win.ph + ki * win.dh
                            if iy < 0 || iy >= h { continue }
                            let row = dst + iy * w + xoff, s = srcBase + y * ow
                            if win.sw == 1 {
                                for xo in valid { row[xo] += s[xo] }
                            } else if win.sw == 2 && littleEndian {
                                // Eight values to every other input column at once: zero-extending
                                // their bits to 64-bit lanes interleaves them with zeros (little-endian).
                                var xo = valid.lowerBound
                                let rowEnd = w &- xoff
                                while xo &+ 8 <= valid.upperBound && 2 &* xo &+ 16 <= rowEnd {
                                    let v = UnsafeRawPointer(s + xo).loadUnaligned(as: SIMD8<UInt32>.self)
                                    let spread = unsafeBitCast(SIMD8<UInt64>(truncatingIfNeeded: v), to: SIMD16<Float>.self)
                                    let target = UnsafeMutableRawPointer(row + 2 &* xo)
                                    target.storeBytes(of: target.loadUnaligned(as: SIMD16<Float>.self) + spread, as: SIMD16<Float>.self)
                                    xo &+= 8
                                }
                                while xo < valid.upperBound { row[2 &* xo] += s[xo]; xo &+= 1 }
                            } else {
                                for xo in valid { row[xo * win.sw] += s[xo] }
                            }
                        }
                    }
                }
            }
        }
    }
}
