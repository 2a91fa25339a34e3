#!/bin/bash
# paired runs of the README main command: this branch (lips) and main before the lips merge (574908e), alternating
D=/work/shared/data/pdfgc
run() {  # $1 tree, $2 label
  local t0=$(date +%s.%N)
  PYTHONPATH=$1 nice -n 5 python3 -m pdfgc.cli animate --portrait $D/anne.png --audio $D/audio_longer.mp3 \
    --pose $D/motions/pose/681600002 --emotion $D/motions/exp/vox2_id01228_00309 \
    --eyes $D/motions/eye/id01333_00040/images -o /tmp/lips2/out_$2.mp4 > /tmp/lips2/speed_$2.log 2>&1
  local t1=$(date +%s.%N)
  echo "$2 rc=$? wall=$(echo "$t1 - $t0" | bc) load=$(cut -d' ' -f1 /proc/loadavg) $(grep -io '[0-9.]* frames/s' /tmp/lips2/speed_$2.log | tail -1)"
}
for i in 1 2 3 4; do
  if [ $((i % 2)) = 1 ]; then run /tmp/lips2/pre pre; run /work/wt-lips2 lips; else run /work/wt-lips2 lips; run /tmp/lips2/pre pre; fi
done
