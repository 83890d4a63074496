#!/usr/bin/env bash
# Where a reload of the big Gateway API config spends its time: runs `weir-bench
# gateway-reload`, records the weir it starts with `perf record` (DWARF call graphs), and
# classifies every sample by its stack: the config load (read + YAML parse, decode,
# validate), the table build (and, apart, its `counters.retain`), the updater's model diff
# (`log_model_diff`), dropping the old model and table, and the rest (serving requests).
# Prints the scenario's report, each phase's wall and CPU time per reload (from the
# samples' timestamps), and each class's share of weir's CPU.
#
# Usage: bench/profile-gateway-reload.sh [gateway-reload options; default --reloads 6]
# perf records weir from its start to its exit (about 50 MB per reload of the default
# config, in a temporary folder). Needs: perf, python3; `cargo build --release --workspace`.
set -euo pipefail
cd "$(dirname "$0")/.."
ARGS=("$@")
[ ${#ARGS[@]} -eq 0 ] && ARGS=(--reloads 6)
for t in perf python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 2; }; done
BENCH=${BENCH:-target/release/weir-bench}
[ -x "$BENCH" ] || { echo "build first: cargo build --release --workspace" >&2; exit 2; }

TMP=$(mktemp -d); trap 'rm -rf $TMP' EXIT
"$BENCH" gateway-reload "${ARGS[@]}" > "$TMP/report.txt" 2>&1 &
BENCH_PID=$!
WEIR_PID=""
for _ in $(seq 200); do
  WEIR_PID=$(pgrep -P $BENCH_PID -x weir || true)
  [ -n "$WEIR_PID" ] && break
  sleep 0.05
done
[ -n "$WEIR_PID" ] || { echo "weir did not start"; cat "$TMP/report.txt"; exit 1; }
# perf follows weir until it exits (its start is a load and a build with no diff).
perf record -F 499 --call-graph dwarf,8192 -p "$WEIR_PID" -o "$TMP/perf.data" >/dev/null 2>&1 &
PERF_PID=$!
wait $BENCH_PID || true
wait $PERF_PID || true
cat "$TMP/report.txt"
echo
perf script -i "$TMP/perf.data" -F tid,time,ip,sym --no-inline 2>/dev/null > "$TMP/script.txt"
python3 - "$TMP/script.txt" <<'EOF'
import re, sys
from collections import Counter

samples, cur = [], None
for line in open(sys.argv[1]):
    m = re.match(r'\s*(\d+)\s+([\d.]+):', line)
    if m:
        if cur:
            samples.append(cur)
        cur = [int(m.group(1)), float(m.group(2)), []]
    elif line.strip() and cur:
        cur[2].append(line.strip())
if cur:
    samples.append(cur)
per = 1.0 / 499

def cls(s):
    if 'log_model_diff' in s: return 'diff', 'updater: log_model_diff'
    if 'routing::build::build' in s:
        return 'build', ('build: counters.retain (used_counters.contains)' if 'retain' in s else 'build: the rest')
    if 'drop_in_place<weir_config::model::Model' in s or 'drop_in_place<weir_proxy::routing::RouteTable' in s:
        return None, 'drop of the old model and table'
    if 'weir_config::validate' in s: return 'load', 'load: validate'
    if 'weir_config::decode' in s: return 'load', 'load: decode'
    if re.search('granit_parser|serde_saphyr|weir_config::read', s): return 'load', 'load: read + YAML parse'
    if 'weir_config' in s: return 'load', 'load: other (fingerprint, ...)'
    return None, 'serving, runtime, kernel'

counts, events = Counter(), []
for tid, t, st in samples:
    phase, c = cls(' '.join(st))
    counts[c] += 1
    if phase:
        events.append((t, phase))
events.sort()
spans = []
for t, p in events:
    if spans and spans[-1]['p'] == p and t - spans[-1]['end'] < 0.3:
        spans[-1]['end'] = t; spans[-1]['n'] += 1
    else:
        spans.append({'p': p, 'start': t, 'end': t, 'n': 1})
merged = []
for s in spans:
    if s['n'] * per < 0.1 and s['p'] == 'load':
        continue  # a few stray samples
    if merged and merged[-1]['p'] == s['p']:
        merged[-1]['end'] = s['end']; merged[-1]['n'] += s['n']
    else:
        merged.append(dict(s))
print("per reload, from perf sample times: phase wall ms (CPU ms)")
row, last = [], None
for s in merged:
    if s['p'] == 'load' and last == 'build':
        # A load after a build with no diff between: weir's start (one build, no diff).
        print('  ' + '   '.join(row) + '   (weir starting)'); row = []
    row.append(f"{s['p']:5} {1000 * (s['end'] - s['start'] + per):7.0f} ({1000 * s['n'] * per:6.0f})")
    last = s['p']
    if s['p'] == 'diff':
        print('  ' + '   '.join(row)); row = []
if row:
    print('  ' + '   '.join(row) + '   (cut off by the end of the recording)')
tot = sum(counts.values())
print(f"weir's CPU by stack: {tot} samples at 499 Hz = {tot * per:.1f} CPU-s")
for k, v in counts.most_common():
    print(f"  {k:50} {100 * v / tot:5.1f}%  {v * per:6.2f} CPU-s")
EOF
