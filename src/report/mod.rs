//! Reporters: consumers of runner events. The console reporter shows one live line per
//! build on a terminal (plain lines otherwise) and a final table; `--json` prints the
//! buildset report as data on stdout. The runner never prints; reporters never decide.

pub mod console;
