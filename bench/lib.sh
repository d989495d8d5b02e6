# Shared by the benchmarks: source it after setting `work` (the scratch
# folder where each contender's `NAME.times` file gathers "SECONDS KB").

# Runs the contender functions given, ROUNDS times. Each round starts with
# a different one, so that whatever a round leaves behind (writeback,
# freed blocks) is shared out among them.
rounds_of() {
    local rounds=$1; shift
    local runs=("$@") r i
    rm -f "$work"/*.times
    for r in $(seq "$rounds"); do
        for i in $(seq 0 $((${#runs[@]} - 1))); do
            "${runs[$(((i + r - 1) % ${#runs[@]}))]}"
        done
        echo "round $r done"
    done
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# The median seconds of contender NAME.
secs() { cut -d' ' -f1 "$work/$1.times" | median; }
