#![no_main]
// The body lives in the library (imgorigin::fuzzing), shared with the regression replay.
libfuzzer_sys::fuzz_target!(|data: &[u8]| imgorigin::fuzzing::probe(data));
