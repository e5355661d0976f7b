#!/usr/bin/env bash
# Mutation testing by hand (not in CI): mutmut 2.x over the layers that make the published numbers,
# each module against its own fast tests only (the whole suite per mutant would take hours).
#
#   bash scripts/mutation.sh                 # every module below
#   bash scripts/mutation.sh stats curvature # some of them
#
# Needs mutmut in the venv, pinned to the installed torch/numpy so pip leaves them alone:
#   pip install -c <(pip freeze | grep -E '^(torch|numpy)==') 'mutmut==2.5.1'
#
# It works on a copy of the tree in a temporary directory (the working tree is never touched, so
# it is safe while others edit it) with PYTHONPATH pointing at the copy. A module may be limited
# to some functions: the other lines of the copy get "# pragma: no mutate". String and f-string
# mutations are off (they mutate messages and labels; the cost of running them is not worth it).
# Prints, per module, killed/total and the surviving mutants as diffs; exits 0.
#
# Known quirks of mutmut 2.5.1 here: never run `mutmut show`/`results` on a module whose run is still
# going (its checker then crashes: "Attribute Mutant.line is required"); and after its last mutant
# mutmut sometimes hangs or vanishes before this script prints SCORE. Every result is in the cache
# by then; with MUTATION_WORK=DIR set, read it with
#   sqlite3 DIR/NAME/.mutmut-cache 'select status, count(*) from Mutant group by status'
# (ok_killed and ok_suspicious count as killed) and list survivors with `mutmut show ID` from DIR/NAME.
set -uo pipefail
ROOT="${NOISEREG_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}"  # the tree to copy
source "$ROOT/scripts/env.sh" >/dev/null
python -c "import mutmut" 2>/dev/null || { echo "mutmut is not installed (see the header of $0)" >&2; exit 1; }

PYTEST="python -m pytest -x -q -p no:cacheprovider"
# name | file | functions ("" = all) | tests
MODULES=(
  "stats|src/noisereg/verdicts.py||tests/test_stats.py"
  "classify|src/noisereg/experiments/classify.py|compare select sam_rows runs data selected claims notes|tests/test_stats.py tests/test_claims.py tests/test_selection.py tests/test_config.py"
  "curvature|src/noisereg/curvature.py|is_piecewise_linear|tests/test_curvature.py tests/test_noise.py -k 'test_ggn_trace_equals_brute_force or gram or resnet or piecewise'"
  "per_sample|src/noisereg/_per_sample.py|_sum_sq_conv _sum_sq_linear|tests/test_curvature.py -k 'test_ggn_trace_equals_brute_force or gram or resnet or chunks_of_one'"
  "loop|src/noisereg/training/loop.py|_augment sigma_at curvature_metrics train|tests/test_training.py tests/test_noise.py -k 'not (sample_batch or piecewise or std_table)'"
  "base|src/noisereg/sweep/experiment.py|run_experiment|tests/test_cli.py tests/test_resume.py tests/test_selection.py tests/test_training.py tests/test_sweeps.py -k '(not test_training or runner or resume) and not ray and not killed and not lost and not parallel_sweep_equals'"
)
WANT=("$@")
if [[ -n "${MUTATION_WORK:-}" ]]; then  # keep the copies (and mutmut's caches) there
  WORK="$MUTATION_WORK"; mkdir -p "$WORK"
else
  WORK="$(mktemp -d /tmp/noisereg-mutation.XXXXXX)"; trap 'rm -rf "$WORK"' EXIT
fi
echo "copy of the tree in $WORK"
# mutmut's entry point as a file in $WORK (a process name without "mutmut" in it)
printf 'import sys\nfrom mutmut.__main__ import climain\nif __name__ == "__main__":\n    sys.argv[0] = "mutmut"\n    sys.exit(climain())\n' >"$WORK/entry.py"
MUTMUT=(python "$WORK/entry.py")

for entry in "${MODULES[@]}"; do
  IFS='|' read -r name file funcs tests <<<"$entry"
  if [[ ${#WANT[@]} -gt 0 && ! " ${WANT[*]} " == *" $name "* ]]; then continue; fi
  override="MUTATION_TESTS_$name"; tests="${!override:-$tests}"  # e.g. MUTATION_TESTS_stats=tests/test_report.py
  dir="$WORK/$name"
  mkdir -p "$dir"
  (cd "$ROOT" && cp -r src tests pyproject.toml "$dir"/ && [[ -d docs ]] && cp -r docs "$dir"/ || true)
  if [[ -n "$funcs" ]]; then
    python - "$dir/$file" $funcs <<'PY'
import ast, io, sys, tokenize
path, keep = sys.argv[1], set(sys.argv[2:])
src = open(path).read()
kept = set()
for node in ast.walk(ast.parse(src)):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in keep:
        kept |= set(range(node.lineno, node.end_lineno + 1))
ends = {t.start[0] for t in tokenize.generate_tokens(io.StringIO(src).readline)
        if t.type in (tokenize.NEWLINE, tokenize.NL)}  # lines that may end in a comment
lines = src.splitlines()
out = [l + "  # pragma: no mutate" if i not in kept and i in ends and l.strip() else l
       for i, l in enumerate(lines, 1)]
open(path, "w").write("\n".join(out) + "\n")
PY
  fi
  echo "== $name: $file${funcs:+ (functions: $funcs)}; tests: $tests"
  (cd "$dir" && export PYTHONPATH="$dir/src" && \
   printf '[mutmut]\npaths_to_mutate=%s\ntests_dir=tests\nrunner=%s\n' "$file" "$PYTEST $tests" >setup.cfg
   timeout "${MUTATION_TIMEOUT:-1200}" "${MUTMUT[@]}" run --disable-mutation-types string,fstring \
     --no-progress --simple-output >"$dir/run.log" 2>&1
   tail -3 "$dir/run.log"
   python - "$dir/.mutmut-cache" "$name" <<'PY'
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
c = dict(con.execute("select status, count(*) from Mutant group by status").fetchall())
total, killed = sum(c.values()), c.get("ok_killed", 0) + c.get("ok_suspicious", 0)  # suspicious: killed, slowly
print(f"SCORE {sys.argv[2]}: {killed}/{total} killed ({100 * killed / max(total, 1):.0f}%); {c}")
ids = [i for (i,) in con.execute("select id from Mutant where status not in ('ok_killed', 'ok_suspicious') order by id")]
open("left.txt", "w").write(" ".join(map(str, ids)))
PY
   for id in $(cat left.txt); do
     echo "-- mutant $id:"; "${MUTMUT[@]}" show "$id" 2>/dev/null | grep -E '^[-+]' | grep -v -E '^(---|[+][+][+])'
   done)
done
exit 0
