import CGradGuardKernels

// MARK: - 2-D convolution (im2col + GEMM) on NCHW tensors

/// Geometry of a 2-D convolution or pooling window.
struct Window2D {
    let kh, kw, sh, sw, ph, pw, dh, dw: Int

    /// The same window for the C kernels.
    var c: gg_window { gg_window(kh: kh, kw: kw, sh: sh, sw: sw, ph: ph, pw: pw, dh: dh, dw: dw) }

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
    public func conv2d(
        weight: Tensor, bias: Tensor? = nil, stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
        dilation: (Int, Int) = (1, 1), groups: Int = 1
    ) -> Tensor {
        let x = self
        require(x.rank == 4 && weight.rank == 4, "conv2d: input \(x.shape) and weight \(weight.shape) must be 4-D")
        let (n, cin, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (cout, cg, kh, kw) = (weight.shape[0], weight.shape[1], weight.shape[2], weight.shape[3])
        require(
            cin % groups == 0 && cout % groups == 0 && cg == cin / groups,
            "conv2d: \(cin) input channels, weight \(weight.shape) and \(groups) groups do not agree")
        if let bias { require(bias.shape == [cout], "conv2d: bias \(bias.shape) is not [\(cout)]") }
        let win = Window2D(
            kh: kh, kw: kw, sh: stride.0, sw: stride.1, ph: padding.0, pw: padding.1,
            dh: dilation.0, dw: dilation.1)
        let (oh, ow) = win.outputSize(h: h, w: w)
        require(oh > 0 && ow > 0, "conv2d: input \(h)×\(w) is smaller than the kernel")
        let geo = ConvGeometry(n: n, cin: cin, h: h, w: w, cout: cout, groups: groups, win: win, oh: oh, ow: ow)
        let out = Tensor(
            shape: [n, cout, oh, ow],
            uninitialized: { dst in
                x.scalars.withUnsafeBufferPointer { px in
                    weight.scalars.withUnsafeBufferPointer { pw in
                        let b = bias?.scalars
                        geo.forEachImage(scratch: true) { _, imgs, serial, scratch, _ in
                            for img in imgs {
                                for g in 0..<groups {
                                    let y = dst.baseAddress! + (img * cout + g * geo.coutg) * geo.hw
                                    sgemm(
                                        transA: false, transB: false, m: geo.coutg, n: geo.hw, k: geo.rows,
                                        a: pw.baseAddress! + g * geo.coutg * geo.rows,
                                        b: geo.columns(px.baseAddress!, img: img, group: g, into: scratch),
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
            // One partial weight gradient per share of images, summed at the end. Each group's part
            // is kept transposed, [rows × coutg] = columns · dYᵀ: the GEMM then transposes dY
            // (coutg × hw) for its packed panels instead of the columns (rows × hw, 2–9× larger).
            var partials = [Float](repeating: 0, count: wantW ? geo.shares * wsize : 0)
            var dxStore = [Float](unsafeUninitializedCapacity: wantX ? x.count : 0) { _, c in c = wantX ? x.count : 0 }
            g.scalars.withUnsafeBufferPointer { pg in
                x.scalars.withUnsafeBufferPointer { px in
                    weight.scalars.withUnsafeBufferPointer { pw in
                        partials.withUnsafeMutableBufferPointer { pp in
                            dxStore.withUnsafeMutableBufferPointer { pdx in
                                geo.forEachImage(scratch: wantW, dScratch: wantX) { share, imgs, serial, scratch, dcols in
                                    for img in imgs {
                                        let dxImg = wantX ? pdx.baseAddress! + img * cin * h * w : nil
                                        if let dxImg, !geo.plain { dxImg.initialize(repeating: 0, count: cin * h * w) }
                                        for grp in 0..<groups {
                                            let dy = pg.baseAddress! + (img * cout + grp * geo.coutg) * geo.hw
                                            let wg = pw.baseAddress! + grp * geo.coutg * geo.rows
                                            if wantW {
                                                sgemm(
                                                    transA: false, transB: true, m: geo.rows, n: geo.coutg, k: geo.hw,
                                                    a: geo.columns(px.baseAddress!, img: img, group: grp, into: scratch), b: dy,
                                                    beta: 1, c: pp.baseAddress! + share * wsize + grp * geo.coutg * geo.rows,
                                                    mayUseWorkers: !serial)
                                            }
                                            if let dxImg {
                                                let dxg = dxImg + grp * cg * h * w
                                                // dcols = W_gᵀ · dY; a plain 1×1 kernel's columns are the input itself.
                                                let target = geo.plain ? dxg : dcols!
                                                sgemm(
                                                    transA: true, transB: false, m: geo.rows, n: geo.hw, k: geo.coutg,
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
                    gb = Tensor(
                        shape: [cout],
                        uninitialized: { dst in
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
                gw = Tensor(
                    shape: weight.shape,
                    uninitialized: { dst in
                        partials.withUnsafeBufferPointer { pp in
                            let part = geo.coutg * geo.rows
                            for g in 0..<groups {
                                for co in 0..<geo.coutg {
                                    for r in 0..<geo.rows {
                                        var s: Float = 0
                                        for sh in 0..<geo.shares { s += pp[sh * wsize + g * part + r * geo.coutg + co] }
                                        dst[g * part + co * geo.rows + r] = s
                                    }
                                }
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

    /// Runs `body` once per share of the images, at once, with that share's scratch buffers
    /// of `rows × hw` floats for columns (`scratch`, unless the kernel is plain) and for their
    /// gradient (`dScratch`, unless the kernel is plain).
    func forEachImage(
        scratch: Bool, dScratch: Bool = false,
        _ body: (_ share: Int, Range<Int>, _ serial: Bool, UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?) -> Void
    ) {
        let size = plain ? 0 : rows * hw
        parallelFor(shares, grain: 1) { range in
            for s in range {
                let cols = size > 0 && scratch ? UnsafeMutablePointer<Float>.allocate(capacity: size) : nil
                let dcols = size > 0 && dScratch ? UnsafeMutablePointer<Float>.allocate(capacity: size) : nil
                defer { cols?.deallocate(); dcols?.deallocate() }
                body(s, (n * s / shares)..<(n * (s + 1) / shares), shares > 1, cols, dcols)
            }
        }
    }

    /// The columns of image `img`, group `group`: the input itself for a plain kernel,
    /// otherwise im2col written into `buffer`.
    func columns(_ x: UnsafePointer<Float>, img: Int, group: Int, into buffer: UnsafeMutablePointer<Float>?) -> UnsafePointer<Float> {
        let src = x + (img * cin + group * cg) * h * w
        guard !plain, let buffer else { return src }
        im2col(src, h: h, w: w, channels: cg, win: win, oh: oh, ow: ow, into: buffer)
        return UnsafePointer(buffer)
    }
}

/// Columns of one image's channel group, `[channels·kh·kw, oh·ow]` (see `gg_im2col`).
/// `x` points at the group's first channel.
@inline(__always)
func im2col(
    _ x: UnsafePointer<Float>, h: Int, w: Int, channels: Int, win: Window2D, oh: Int, ow: Int,
    into out: UnsafeMutablePointer<Float>
) {
    var cw = win.c
    gg_im2col(x, h, w, channels, &cw, oh, ow, out, Kernels.level.cValue)
}

/// The adjoint of `im2col` for one image's channel group: adds each column entry back to the
/// input position it came from. `dx` points at the group's first channel.
@inline(__always)
func col2im(
    _ cols: UnsafePointer<Float>, into dx: UnsafeMutablePointer<Float>, h: Int, w: Int, channels: Int,
    win: Window2D, oh: Int, ow: Int
) {
    var cw = win.c
    gg_col2im(cols, dx, h, w, channels, &cw, oh, ow, Kernels.level.cValue)
}

extension Tensor {
    /// 1-D convolution of `[batch, channels, length]` by `weight` `[out, channels/groups, k]`,
    /// as `torch.nn.functional.conv1d`: a 2-D convolution of height 1.
    public func conv1d(weight: Tensor, bias: Tensor? = nil, stride: Int = 1, padding: Int = 0, dilation: Int = 1, groups: Int = 1) -> Tensor {
        require(rank == 3 && weight.rank == 3, "conv1d: input \(shape) and weight \(weight.shape) must be 3-D")
        let y = unsqueezed(2).conv2d(
            weight: weight.unsqueezed(2), bias: bias, stride: (1, stride), padding: (0, padding), dilation: (1, dilation), groups: groups)
        return y.squeezed(2)
    }
}
