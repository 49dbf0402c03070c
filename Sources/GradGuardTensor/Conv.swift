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
    /// `torch.nn.functional.conv2d`.
    ///
    /// Image by image and group by group: `Y_n,g = W_g · im2col(x_n,g)` written straight into
    /// the NCHW output. The images are shared out over the workers, each product running on
    /// one core, so one image's columns stay in cache between im2col and the GEMM and no
    /// batch-wide column matrix is ever built; backward recomputes them the same way. A batch
    /// smaller than the worker count runs image by image with each product split over the
    /// workers instead. A 1×1 kernel with stride 1 and no padding needs no columns at all:
    /// the image itself is the right-hand matrix.
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
        let geo = ConvGeometry(n: n, cin: cin, h: h, w: w, cout: cout, groups: groups, win: win, oh: oh, ow: ow)
        let out = Tensor(shape: [n, cout, oh, ow], uninitialized: { dst in
            x.scalars.withUnsafeBufferPointer { px in
                weight.scalars.withUnsafeBufferPointer { pw in
                    let b = bias?.scalars
                    geo.forEachImage { imgs, serial, cols in
                        for img in imgs {
                            for g in 0..<groups {
                                let y = dst.baseAddress! + (img * cout + g * geo.coutg) * geo.hw
                                sgemm(transA: false, transB: false, m: geo.coutg, n: geo.hw, k: geo.rows,
                                      a: pw.baseAddress! + g * geo.coutg * geo.rows,
                                      b: geo.columns(px.baseAddress!, img: img, group: g, scratch: cols),
                                      c: y, mayUseWorkers: !serial)
                                if let b {
                                    for co in 0..<geo.coutg {
                                        let add = b[g * geo.coutg + co], row = y + co * geo.hw
                                        for p in 0..<geo.hw { row[p] += add }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        })
        let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
        return Tensor.record("conv2d", out, inputs) { g in
            var gx: Tensor? = nil, gw: Tensor? = nil, gb: Tensor? = nil
            let wantW = weight.requiresGrad, wantX = x.requiresGrad
            let wsize = weight.count
            // One partial weight gradient per share of images, summed at the end.
            var partials = [Float](repeating: 0, count: wantW ? geo.shares * wsize : 0)
            var dxStore = [Float](unsafeUninitializedCapacity: wantX ? x.count : 0) { _, c in c = wantX ? x.count : 0 }
            g.scalars.withUnsafeBufferPointer { pg in
                x.scalars.withUnsafeBufferPointer { px in
                    weight.scalars.withUnsafeBufferPointer { pw in
                        partials.withUnsafeMutableBufferPointer { pp in
                            dxStore.withUnsafeMutableBufferPointer { pdx in
                                geo.forEachImage(needsDColumns: wantX) { share, imgs, serial, cols, dcols in
                                    for img in imgs {
                                        let dxImg = wantX ? pdx.baseAddress! + img * cin * h * w : nil
                                        if let dxImg, !geo.plain { dxImg.initialize(repeating: 0, count: cin * h * w) }
                                        for grp in 0..<groups {
                                            let dy = pg.baseAddress! + (img * cout + grp * geo.coutg) * geo.hw
                                            let wg = pw.baseAddress! + grp * geo.coutg * geo.rows
                                            if wantW {
                                                sgemm(transA: false, transB: true, m: geo.coutg, n: geo.rows, k: geo.hw,
                                                      a: dy, b: geo.columns(px.baseAddress!, img: img, group: grp, scratch: cols),
                                                      beta: 1, c: pp.baseAddress! + share * wsize + grp * geo.coutg * geo.rows,
                                                      mayUseWorkers: !serial)
                                            }
                                            if let dxImg {
                                                let dxg = dxImg + grp * cg * h * w
                                                // dcols = W_gᵀ · dY; a plain 1×1 kernel's columns are the input itself.
                                                let target = geo.plain ? dxg : dcols!
                                                sgemm(transA: true, transB: false, m: geo.rows, n: geo.hw, k: geo.coutg,
                                                      a: wg, b: dy, c: target, mayUseWorkers: !serial)
                                                if !geo.plain { col2im(UnsafePointer(target), into: dxg, h: h, w: w, channels: cg, win: win, oh: oh, ow: ow) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                if let bias, bias.requiresGrad {
                    gb = Tensor(shape: [cout], uninitialized: { dst in
                        parallelFor(cout, grain: 8) { range in
                            for co in range {
                                var s: Float = 0
                                for img in 0..<n {
                                    let row = pg.baseAddress! + (img * cout + co) * geo.hw
                                    for j in 0..<geo.hw { s += row[j] }
                                }
                                dst[co] = s
                            }
                        }
                    })
                }
            }
            if wantW {
                gw = Tensor(shape: weight.shape, uninitialized: { dst in
                    partials.withUnsafeBufferPointer { pp in
                        for i in 0..<wsize {
                            var s: Float = 0
                            for sh in 0..<geo.shares { s += pp[sh * wsize + i] }
                            dst[i] = s
                        }
                    }
                })
            }
            if wantX { gx = Tensor(shape: x.shape, scalars: dxStore) }
            return [gx, gw, gb]
        }
    }
}

/// Shapes of one convolution and how its images are shared out over the workers.
struct ConvGeometry {
    let n, cin, h, w, cout, groups, oh, ow: Int
    let win: Window2D
    let cg, coutg, rows, hw: Int
    /// A 1×1 kernel, stride 1, no padding: an image's channels are its own columns.
    let plain: Bool
    /// Shares of the batch that run at once, each on one core; 1 when the batch is smaller
    /// than the worker count (then each product is split over the workers instead).
    let shares: Int

    init(n: Int, cin: Int, h: Int, w: Int, cout: Int, groups: Int, win: Window2D, oh: Int, ow: Int) {
        (self.n, self.cin, self.h, self.w, self.cout, self.groups, self.win, self.oh, self.ow) =
            (n, cin, h, w, cout, groups, win, oh, ow)
        cg = cin / groups
        coutg = cout / groups
        rows = cg * win.kh * win.kw
        hw = oh * ow
        plain = win.kh == 1 && win.kw == 1 && win.sh == 1 && win.sw == 1 && win.ph == 0 && win.pw == 0
        let workers = Kernels.threadCount
        shares = n >= workers ? workers : 1
    }

    /// Runs `body` once per share of the images, at once, with that share's scratch columns
    /// (`rows × hw`, or none for a plain kernel) and, if asked, a second buffer for their gradient.
    func forEachImage(needsDColumns: Bool = false,
                      _ body: (_ share: Int, Range<Int>, _ serial: Bool, UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?) -> Void) {
        let size = plain ? 0 : rows * hw
        parallelFor(shares, grain: 1) { range in
            for s in range {
                let cols = size > 0 ? UnsafeMutablePointer<Float>.allocate(capacity: size) : nil
                let dcols = size > 0 && needsDColumns ? UnsafeMutablePointer<Float>.allocate(capacity: size) : nil
                defer { cols?.deallocate(); dcols?.deallocate() }
                body(s, (n * s / shares)..<(n * (s + 1) / shares), shares > 1, cols, dcols)
            }
        }
    }

    func forEachImage(_ body: (Range<Int>, _ serial: Bool, UnsafeMutablePointer<Float>?) -> Void) {
        forEachImage(needsDColumns: false) { _, imgs, serial, cols, _ in body(imgs, serial, cols) }
    }

    /// The columns of image `img`, group `group`: the input itself for a plain kernel,
    /// otherwise im2col written into `scratch`.
    func columns(_ x: UnsafePointer<Float>, img: Int, group: Int, scratch: UnsafeMutablePointer<Float>?) -> UnsafePointer<Float> {
        let src = x + (img * cin + group * cg) * h * w
        guard let scratch else { return src }
        im2col(src, h: h, w: w, channels: cg, win: win, oh: oh, ow: ow, into: scratch)
        return UnsafePointer(scratch)
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

/// Columns of one image's channel group, `[channels·kh·kw, oh·ow]`: row (c, i, j) holds, for
/// every output position, the input value under kernel tap (i, j) of channel c (0 in the
/// padding). `x` points at the group's first channel.
func im2col(_ x: UnsafePointer<Float>, h: Int, w: Int, channels: Int, win: Window2D, oh: Int, ow: Int,
            into os: UnsafeMutablePointer<Float>) {
    let (kh, kw, sh, sw, ph, dh, dw) = (win.kh, win.kw, win.sh, win.sw, win.ph, win.dh, win.dw)
    let pw = win.pw, hw = oh * ow
    for r in 0..<(channels * kh * kw) {
        let ch = r / (kh * kw), ki = (r / kw) % kh, kj = r % kw
        let xoff = kj &* dw &- pw
        let valid = validColumns(offset: xoff, stride: sw, width: w, outWidth: ow)
        let lo = valid.lowerBound, hi = valid.upperBound
        let src = x + ch * h * w
        // Rows are short (a feature map's width): plain loops, which vectorise, beat a
        // memmove call per row.
        var d = os + r * hw
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

#if _endian(little)
let littleEndian = true
#else
let littleEndian = false
#endif

/// The adjoint of `im2col` for one image's channel group: adds each column entry back to the
/// input position it came from. `dx` points at the group's first channel.
func col2im(_ cols: UnsafePointer<Float>, into dx: UnsafeMutablePointer<Float>, h: Int, w: Int, channels: Int,
            win: Window2D, oh: Int, ow: Int) {
    let hw = oh * ow
    for ch in 0..<channels {
        let dst = dx + ch * h * w
        for ki in 0..<win.kh {
            for kj in 0..<win.kw {
                let r = (ch * win.kh + ki) * win.kw + kj
                let xoff = kj * win.dw - win.pw
                let valid = validColumns(offset: xoff, stride: win.sw, width: w, outWidth: ow)
                let srcBase = cols + r * hw
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
