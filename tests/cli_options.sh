#!/usr/bin/env bash
# Which common options a command takes (the groups each src/cli/cmd_*.c declares): eval and encode list
# only the options that apply to them in --help, and refuse the others with a one-line message and
# exit status 2 before doing any work; the training commands keep every option.
set -u
WCMI="$1"
DIR="$(mktemp -d "${TMPDIR:-/tmp}/wcmi-cli-options.XXXXXX")"
trap 'rm -rf "$DIR"' EXIT
fail=0
check() { # check DESCRIPTION COMMAND...
  local what="$1"; shift
  if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fail=1; fi
}

# refused CMD OPTION ARGS...: exit 2, one line naming the option, nothing on stdout.
refused() {
  local cmd="$1" opt="$2"; shift 2
  "$WCMI" "$cmd" "$@" >"$DIR/out" 2>"$DIR/err"
  local rc=$?
  [ "$rc" = 2 ] && [ ! -s "$DIR/out" ] && [ "$(wc -l <"$DIR/err")" = 1 ] &&
    grep -q -- "wcmi $cmd: $opt does not apply to $cmd" "$DIR/err"
}
# lists CMD OPTION: `wcmi CMD --help` has a line for OPTION.
lists() { "$WCMI" "$1" --help | grep -q -- "^ *$2[ =]"; }

for opt in --epochs --lr --hsize --estimator --grad-path --eps-fade --resume --train-subset --timing --max-batches; do
  check "eval refuses $opt" refused eval "$opt" --model "$DIR/none.safetensors" "$opt" 1
  check "eval --help leaves out $opt" bash -c "! \"$WCMI\" eval --help | grep -q -- '^ *$opt[ =]'"
done
check "eval refuses --epochs=3 (name=value form)" refused eval --epochs --model m --epochs=3
for opt in --data --test-subset --batch-size --eps --attack-steps --restarts --random-start --eval-batches --seed \
  --threads --conv-algo --progress --out; do
  check "eval --help lists $opt" lists eval "$opt"
done

for opt in --eps --attack-steps --norm --eval-batches --epochs --hsize --out --progress --resume; do
  check "encode refuses $opt" refused encode "$opt" --model m -o "$DIR/z.npy" "$opt" 1
  check "encode --help leaves out $opt" bash -c "! \"$WCMI\" encode --help | grep -q -- '^ *$opt[ =]'"
done
for opt in --data --train-subset --test-subset --batch-size --seed --threads --conv-algo; do
  check "encode --help lists $opt" lists encode "$opt"
done

# An option that applies still reaches the task: the model file is what fails (exit 1), not usage.
"$WCMI" eval --model "$DIR/none.safetensors" --eps 0.1 --threads 1 >/dev/null 2>"$DIR/err"
check "eval with options that apply runs the task (exit 1 on the missing model)" test $? = 1
check "  and names the file" grep -q "none.safetensors" "$DIR/err"

for opt in --epochs --lr --hsize --eps --eps-fade --resume --train-subset --out; do
  check "train-encoder --help lists $opt" lists train-encoder "$opt"
done
for opt in --epochs --hsize --eps; do
  check "estimate-mi --help lists $opt" lists estimate-mi "$opt"
done
exit $fail
