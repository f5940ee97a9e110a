# Sourced by tests/cli_report.sh and tests/cli_report_browser.sh: hand-written run directories in
# the formats the tasks write (docs/report.md), so the report tests do not need to train anything.
#   make_report_fixtures DIR   creates DIR/{enc,clf,vul/{normal,worst},ev,empty,'x<i>y'}
# Expected charts (REPORT_FIXTURE_SVGS): enc 3 curves + MI bars = 4; clf 7 curves; vul MI bars +
# Fano bars + 2 per-neuron histograms (per_neuron.json) + (2 curves + a test_mi bar chart) in each of
# normal/ and worst/ = 10; Figure 2 scatter 1; total 22.
REPORT_FIXTURE_SVGS=22
REPORT_FIXTURE_RUNS=6

make_report_fixtures() {
  local d="$1"
  mkdir -p "$d/enc" "$d/clf" "$d/vul/normal" "$d/vul/worst" "$d/ev" "$d/empty" "$d/x<i>y"
  cat > "$d/enc/config.json" <<'JSON'
{"task": "train-encoder", "profile": "quick", "hsize": 16, "worst": true, "note": "<script>alert(1)</script> & more",
 "attack": {"norm": "linf", "eps": 0.1, "steps": 2}}
JSON
  cat > "$d/enc/metrics.jsonl" <<'JSON'
{"epoch": 0, "loss": 2.5, "mi": -2.5, "eval": {"test_mi_normal": -0.13}}
{"epoch": 1, "loss": 0.1, "mi": -0.1, "eval": {"test_mi_normal": 0.05}}
{"epoch": 2, "loss": -0.4, "mi": 0.4, "eval": {"test_mi_normal": 0.17}}
JSON
  cat > "$d/enc/summary.json" <<'JSON'
{"task": "train-encoder", "objective": "worst", "test_mi_normal": 0.17, "test_mi_worst": 0.03}
JSON
  : > "$d/clf/best.safetensors"
  cat > "$d/clf/config.json" <<'JSON'
{"task": "train-classifier", "head": "mlp", "robust": true}
JSON
  cat > "$d/clf/metrics.jsonl" <<'JSON'
{"epoch": 0, "loss": 1.2, "train_acc": 0.55, "lr": 0.0005, "seconds": 3.1, "eval": {"nat_acc": 0.61, "adv_acc": 0.12, "train_eps": 0.1}}
{"epoch": 1, "loss": 0.9, "train_acc": 0.68, "lr": 0.0005, "seconds": 3.0, "eval": {"nat_acc": 0.70, "adv_acc": 0.21, "train_eps": 0.1}}
{"epoch": 2, "loss": 0.8, "train_acc": 0.72, "lr": 0.0005, "seconds": 2.9, "eval": {"nat_acc": 0.74, "adv_acc": 0.25, "train_eps": 0.1}}
JSON
  cat > "$d/clf/summary.json" <<'JSON'
{"task": "train-classifier", "nat_acc": 0.74, "adv_acc": 0.25, "best_epoch": 2, "best_nat_acc": 0.74, "best_adv_acc": 0.25,
 "attack": {"algorithm": "pgd", "eps": 0.1}}
JSON
  cat > "$d/vul/summary.json" <<JSON
{"task": "vulnerability", "model": "$d/clf/best.safetensors", "normal_mi": 1.9, "worst_mi": 0.6, "worst_mi_refit": 0.8,
 "rv": 1.3, "rv_refit": 1.1, "num_classes": 10, "fano_bound": 0.5616, "fano_bound_refit": 0.648, "units": "nats"}
JSON
  cat > "$d/vul/per_neuron.json" <<'JSON'
{"task": "vulnerability-per-neuron", "layer": "layer1.0", "channels": 4,
 "histogram": {"normal_mi": {"edges": [0, 0.5, 1.0], "counts": [1, 3]}, "rv": {"edges": [0, 0.2, 0.4, 0.6], "counts": [2, 1, 1]}}}
JSON
  local c
  for c in normal worst; do
    printf '{"epoch": 0, "loss": -0.5, "mi": 0.5}\n{"epoch": 1, "loss": -0.9, "mi": 0.9}\n' > "$d/vul/$c/metrics.jsonl"
    printf '{"task": "estimate-mi", "case": "%s", "test_mi": 0.9}\n' "$c" > "$d/vul/$c/summary.json"
  done
  cat > "$d/ev/eval.json" <<'JSON'
{"task": "eval", "model": "/nonexistent/other.safetensors", "nat_acc": 0.88,
 "attacks": [{"name": "pgd", "adv_acc": 0.4}, {"name": "apgd", "adv_acc": 0.35}],
 "min_adv_acc": 0.35, "worst_case_adv_acc": 0.33, "adv_acc": 0.33}
JSON
  printf '{"task": "train-encoder"}\n' > "$d/x<i>y/config.json"
}
