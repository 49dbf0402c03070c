@preconcurrency import Glibc

/// Makes standard output line-buffered, so progress written to a pipe or a log file
/// appears line by line rather than in 4 KB blocks.
func lineBufferStandardOutput() {
    setvbuf(stdout, nil, _IOLBF, 0)
}
