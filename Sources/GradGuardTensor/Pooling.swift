// MARK: - Pooling and resampling on NCHW tensors

extension Tensor {
    private var nchw: (Int, Int, Int, Int) {
        require(rank == 4, "expected an NCHW tensor, got shape \(shape)")
        return (shape[0], shape[1], shape[2], shape[3])
    }

    /// Max over windows (`torch.nn.functional.max_pool2d`, floor mode); padding counts as −∞.
    /// The gradient goes to the first maximum of each window.
    public func maxPool2d(
        kernel: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0),
        dilation: (Int, Int) = (1, 1)
    ) -> Tensor {
        let (n, c, h, w) = nchw
        let s = stride ?? kernel
        require(padding.0 * 2 <= kernel.0 && padding.1 * 2 <= kernel.1, "maxPool2d: padding must be at most half the kernel")
        let win = Window2D(kh: kernel.0, kw: kernel.1, sh: s.0, sw: s.1, ph: padding.0, pw: padding.1, dh: dilation.0, dw: dilation.1)
        let (oh, ow) = win.outputSize(h: h, w: w)
        var argmax = [Int](repeating: -1, count: n * c * oh * ow)
        let out = Tensor(
            shape: [n, c, oh, ow],
            uninitialized: { dst in
                scalars.withUnsafeBufferPointer { x in
                    argmax.withUnsafeMutableBufferPointer { am in
                        parallelFor(n * c, grain: 1) { range in
                            for plane in range {
                                let src = plane * h * w
                                for y in 0..<oh {
                                    for xo in 0..<ow {
                                        var best = -Float.infinity, bi = -1
                                        for i in 0..<win.kh {
                                            let iy = y * win.sh - win.ph + i * win.dh
                                            if iy < 0 || iy >= h { continue }
                                            for j in 0..<win.kw {
                                                let ix = xo * win.sw - win.pw + j * win.dw
                                                if ix < 0 || ix >= w { continue }
                                                let v = x[src + iy * w + ix]
                                                if v > best || v.isNaN || bi < 0 { best = v; bi = iy * w + ix; if v.isNaN { break } }
                                            }
                                        }
                                        let o = (plane * oh + y) * ow + xo
                                        dst[o] = best
                                        am[o] = bi
                                    }
                                }
                            }
                        }
                    }
                }
            })
        let inShape = shape
        return Tensor.record("maxPool2d", out, [self]) { g in
            [
                Tensor(
                    shape: inShape,
                    uninitialized: { dx in
                        dx.initialize(repeating: 0)
                        for plane in 0..<(n * c) {
                            for k in 0..<(oh * ow) {
                                let o = plane * oh * ow + k
                                if argmax[o] >= 0 { dx[plane * h * w + argmax[o]] += g.scalars[o] }
                            }
                        }
                    })
            ]
        }
    }

    /// Mean over windows (`avg_pool2d`, floor mode). With `countIncludePad` (PyTorch's
    /// default) the divisor is the window size; otherwise the number of input values inside.
    public func avgPool2d(
        kernel: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0),
        countIncludePad: Bool = true
    ) -> Tensor {
        let (_, _, h, w) = nchw
        let s = stride ?? kernel
        let win = Window2D(kh: kernel.0, kw: kernel.1, sh: s.0, sw: s.1, ph: padding.0, pw: padding.1, dh: 1, dw: 1)
        let (oh, ow) = win.outputSize(h: h, w: w)
        // For each output: the input rectangle and its divisor.
        return rectangleMean("avgPool2d", oh: oh, ow: ow) { y, xo in
            let y0 = y * win.sh - win.ph, x0 = xo * win.sw - win.pw
            let y1 = Swift.min(y0 + win.kh, h + win.ph), x1 = Swift.min(x0 + win.kw, w + win.pw)
            let padded = (y1 - y0) * (x1 - x0)
            let (cy0, cx0, cy1, cx1) = (Swift.max(y0, 0), Swift.max(x0, 0), Swift.min(y1, h), Swift.min(x1, w))
            let divisor = countIncludePad ? padded : (cy1 - cy0) * (cx1 - cx0)
            return (cy0..<Swift.max(cy1, cy0), cx0..<Swift.max(cx1, cx0), Float(Swift.max(divisor, 1)))
        }
    }

    /// Mean over `outputSize` bins covering the input (`adaptive_avg_pool2d`): bin i spans
    /// rows ⌊i·H/OH⌋ ..< ⌈(i+1)·H/OH⌉, and likewise for columns.
    public func adaptiveAvgPool2d(outputSize: (Int, Int)) -> Tensor {
        let (_, _, h, w) = nchw
        let (oh, ow) = outputSize
        func span(_ i: Int, _ inSize: Int, _ outSize: Int) -> Range<Int> {
            (i * inSize / outSize)..<(((i + 1) * inSize + outSize - 1) / outSize)
        }
        return rectangleMean("adaptiveAvgPool2d", oh: oh, ow: ow) { y, xo in
            let ry = span(y, h, oh), rx = span(xo, w, ow)
            return (ry, rx, Float(ry.count * rx.count))
        }
    }

    /// The pooling that both average pools are: output (y, x) of every plane is the sum of
    /// the input rectangle `cell(y, x)` gives, divided by its divisor; the gradient spreads
    /// back over the same rectangle.
    private func rectangleMean(
        _ op: String, oh: Int, ow: Int,
        cell: @escaping (Int, Int) -> (rows: Range<Int>, cols: Range<Int>, divisor: Float)
    ) -> Tensor {
        let (n, c, h, w) = nchw
        let out = Tensor(
            shape: [n, c, oh, ow],
            uninitialized: { dst in
                scalars.withUnsafeBufferPointer { x in
                    parallelFor(n * c, grain: 1) { range in
                        for plane in range {
                            for y in 0..<oh {
                                for xo in 0..<ow {
                                    let (ry, rx, div) = cell(y, xo)
                                    var sum: Float = 0
                                    for iy in ry { for ix in rx { sum += x[plane * h * w + iy * w + ix] } }
                                    dst[(plane * oh + y) * ow + xo] = sum / div
                                }
                            }
                        }
                    }
                }
            })
        let inShape = shape
        return Tensor.record(op, out, [self]) { g in
            [
                Tensor(
                    shape: inShape,
                    uninitialized: { dx in
                        dx.initialize(repeating: 0)
                        for plane in 0..<(n * c) {
                            for y in 0..<oh {
                                for xo in 0..<ow {
                                    let (ry, rx, div) = cell(y, xo)
                                    let v = g.scalars[(plane * oh + y) * ow + xo] / div
                                    for iy in ry { for ix in rx { dx[plane * h * w + iy * w + ix] += v } }
                                }
                            }
                        }
                    })
            ]
        }
    }

    /// Nearest-neighbour upsampling by integer factors (`interpolate(mode='nearest')`):
    /// output (y, x) reads input (⌊y/sy⌋, ⌊x/sx⌋).
    public func upsampleNearest(scale: (Int, Int)) -> Tensor {
        let (n, c, h, w) = nchw
        let (sy, sx) = scale
        require(sy >= 1 && sx >= 1, "upsampleNearest: scale factors must be positive integers")
        let oh = h * sy, ow = w * sx
        let out = Tensor(
            shape: [n, c, oh, ow],
            uninitialized: { dst in
                scalars.withUnsafeBufferPointer { x in
                    parallelFor(n * c, grain: 1) { range in
                        for plane in range {
                            for y in 0..<oh {
                                let src = plane * h * w + (y / sy) * w, d = (plane * oh + y) * ow
                                for xo in 0..<ow { dst[d + xo] = x[src + xo / sx] }
                            }
                        }
                    }
                }
            })
        let inShape = shape
        return Tensor.record("upsampleNearest", out, [self]) { g in
            [
                Tensor(
                    shape: inShape,
                    uninitialized: { dx in
                        dx.initialize(repeating: 0)
                        for plane in 0..<(n * c) {
                            for y in 0..<oh {
                                let d = plane * h * w + (y / sy) * w, s = (plane * oh + y) * ow
                                for xo in 0..<ow { dx[d + xo / sx] += g.scalars[s + xo] }
                            }
                        }
                    })
            ]
        }
    }
}
