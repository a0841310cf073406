//! One test per bug found after release. Empty so far.
