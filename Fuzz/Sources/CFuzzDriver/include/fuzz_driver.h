#ifndef GRADGUARD_FUZZ_DRIVER_H
#define GRADGUARD_FUZZ_DRIVER_H
/// Runs libFuzzer's driver on the target's LLVMFuzzerTestOneInput (defined in Swift with
/// @_cdecl). SwiftPM names an executable's entry point <module>_main; each target's
/// Driver.swift forwards it here.
int gg_fuzz_main(int argc, char **argv);
#endif
