#!/usr/bin/env bash
# The table of run settings (wcmi/task_config.h) drives every task command's options: --help lists
# the settings of the groups the command declares, one heading per group, and a flag sits under the
# same group in every command; a setting of a group the command does not take is refused before any
# work (exit 2, one line naming it), and one it takes reaches the parser. The settings themselves
# (defaults, config.json round trip, ranges) are checked by tests/test_task_config.c.
set -u
WCMI="$1"
DIR="$(mktemp -d "${TMPDIR:-/tmp}/wcmi-cli-config-table.XXXXXX")"
trap 'rm -rf "$DIR"' EXIT
fail=0
check() { # check DESCRIPTION COMMAND...
  local what="$1"; shift
  if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fail=1; fi
}
CMDS="train-encoder train-classifier train-model eval encode estimate-mi vulnerability"

# "command<TAB>group<TAB>flag" for every setting under a group heading of each command's --help.
for cmd in $CMDS; do
  "$WCMI" "$cmd" --help | awk -v cmd="$cmd" '
    /^[a-z][a-z ]* options:$/ { g = $0; sub(/ options:$/, "", g); next }
    /^$/ { g = "" }
    g != "" && /^  --/ { print cmd "\t" g "\t" $1 }'
done >"$DIR/pairs"
cut -f2,3 "$DIR/pairs" | sort -u >"$DIR/table"    # group<TAB>flag
cut -f2 "$DIR/table" | sort -u >"$DIR/flags"

check "the task commands list $(wc -l <"$DIR/flags") settings in $(cut -f1 "$DIR/table" | sort -u | wc -l) groups (the whole table: 48 flags, 18 groups)" \
  test "$(wc -l <"$DIR/flags")" = 48 -a "$(cut -f1 "$DIR/table" | sort -u | wc -l)" = 18
check "every flag sits under one group in every command" test "$(wc -l <"$DIR/table")" = "$(wc -l <"$DIR/flags")"

for cmd in $CMDS; do
  # A group a command lists, it lists whole.
  for g in $(awk -F'\t' -v c="$cmd" '$1 == c { print $2 }' "$DIR/pairs" | sort -u | tr ' ' '_'); do
    group="${g//_/ }"
    want=$(awk -F'\t' -v g="$group" '$1 == g { print $2 }' "$DIR/table" | sort | tr '\n' ' ')
    got=$(awk -F'\t' -v c="$cmd" -v g="$group" '$1 == c && $2 == g { print $3 }' "$DIR/pairs" | sort | tr '\n' ' ')
    check "$cmd lists the whole $group group" test "$want" = "$got"
  done
  listed=$(awk -F'\t' -v c="$cmd" '$1 == c { print $3 }' "$DIR/pairs" | sort)
  refused=0 taken=0
  while read -r flag; do
    if grep -qx -- "$flag" <<<"$listed"; then
      # Taken: the parser reaches it (the unknown option before it is what fails).
      "$WCMI" "$cmd" --not-an-option "$flag" 1 >"$DIR/out" 2>"$DIR/err"
      if [ $? = 2 ] && grep -q "unknown option '--not-an-option'" "$DIR/err"; then taken=$((taken + 1))
      else echo "  $cmd $flag: $(cat "$DIR/err")"; fi
    else
      "$WCMI" "$cmd" "$flag" 1 >"$DIR/out" 2>"$DIR/err"
      if [ $? = 2 ] && [ ! -s "$DIR/out" ] && [ "$(wc -l <"$DIR/err")" = 1 ] &&
        grep -q -- "wcmi $cmd: $flag does not apply to $cmd" "$DIR/err"; then refused=$((refused + 1))
      else echo "  $cmd $flag: $(cat "$DIR/err")"; fi
    fi
  done <"$DIR/flags"
  n=$(grep -c . <<<"$listed")
  check "$cmd: its $n settings reach the parser, the other $((48 - n)) are refused" \
    test "$taken" = "$n" -a "$refused" = "$((48 - n))"
done

# One group per command, spot checks against the declarations in src/cli/cmd_*.c.
has() { awk -F'\t' -v c="$1" -v g="$2" '$1 == c && $2 == g' "$DIR/pairs" | grep -q .; }
check "only train-encoder takes the probe group" bash -c "$(declare -f has); DIR='$DIR'; has train-encoder probe && ! has train-model probe && ! has eval probe"
check "eval takes the eval attack group, encode does not take the attack group" \
  bash -c "$(declare -f has); DIR='$DIR'; has eval 'eval attack' && ! has encode attack"
check "estimate-mi takes --case, train-encoder --objective" \
  bash -c "grep -q \$'estimate-mi\tcase\t--case' '$DIR/pairs' && grep -q \$'train-encoder\tobjective\t--objective' '$DIR/pairs'"
# --resume: the run's config.json fixes its settings. A resumable one (--epochs, --threads) may be
# given; any other must repeat the run's value, and --out / --force do not go with it.
mkdir -p "$DIR/run"
cat >"$DIR/run/config.json" <<'JSON'
{"task": "train-encoder", "profile": "quick", "data": "fashion-mnist", "train_subset": 64, "test_subset": 64,
 "epochs": 1, "batch_size": 32, "lr": 0.0005, "seed": 0, "hsize": 8, "estimator": "dv", "measure": "jsd",
 "grad_path": "encoder", "head": "mlp", "worst": false, "robust": false,
 "attack": {"norm": "linf", "eps": 0.1, "step": 0.02, "steps": 2, "random_start": false, "restarts": 0,
            "use_best": true, "eps_fade_epochs": 0}, "max_batches": 1, "eval_batches": 1}
JSON
resume_refused() { # resume_refused WHAT ARGS...: exit 2, one line containing WHAT
  local what="$1"; shift
  "$WCMI" train-encoder --resume "$DIR/run" "$@" >"$DIR/out" 2>"$DIR/err"
  [ $? = 2 ] && [ "$(wc -l <"$DIR/err")" = 1 ] && grep -q -- "$what" "$DIR/err"
}
check "--resume refuses --objective worst on a normal run" resume_refused "--objective worst differs from the run" --objective worst
check "--resume refuses --lr 0.1 (the run's lr is 0.0005)" resume_refused "(0.0005: config.json's \"lr\")" --lr 0.1
check "--resume refuses --out" resume_refused "--out does not go with --resume" --out "$DIR/other"
"$WCMI" train-encoder --resume "$DIR/run" --objective normal --lr 5e-4 --epochs 3 --threads 1 >"$DIR/out" 2>"$DIR/err"
check "--resume takes the run's own values and resumable settings (then: no checkpoint yet, exit 1)" \
  bash -c "[ $? = 1 ] && grep -q 'no checkpoint yet' '$DIR/err'"
exit $fail
