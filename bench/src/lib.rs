//! `weir-bench`: the `weir-bench split|reload|memory|micro|gateway-routes|gateway-reload|blast|false-rollbacks|control-loop`
//! benchmarks ([`scenarios`]), which start a weir binary (or run its pieces in-process) and
//! report. The fake backend and load generator they drive live in `weir-fixtures`.

pub mod scenarios;
