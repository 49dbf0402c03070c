import CFuzzDriver

// SwiftPM links an executable's entry point as <module>_main: run libFuzzer's driver from it.
@_cdecl("FuzzRunRecords_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt { gg_fuzz_main(argc, argv) }
