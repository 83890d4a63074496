//! Tests of the canary-vs-stable provider glue.
