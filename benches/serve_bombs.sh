#!/usr/bin/env bash
# Latency of an ordinary `geoexp serve` request while another client sends decompression
# bombs (16 JPEGs of ~2 KB whose headers claim 30000×30000 pixels each).
#
#   benches/serve_bombs.sh [GEOEXP_BINARY]      # default: target/release/geoexp
#
# Trains a tiny model on a synthetic dataset in a temp folder, starts the server, times an
# ordinary request alone, then one sent 0.2 s after the bomb request started. Prints the
# status and time of each; a server that decodes bombs makes the ordinary request wait for
# them (it waited 49.8 s before geoexp checked declared sizes; 2.2 ms after). Then the
# same beside a request of sixteen genuine 4096 px photos, whose decoding takes real time:
# it should occupy one worker, not every core.
set -euo pipefail
G="${1:-${CARGO_TARGET_DIR:-target}/release/geoexp}"
G="$(cd "$(dirname "$G")" && pwd)/$(basename "$G")"
work="$(mktemp -d)"
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"
"$G" synth --out data --locations 60 --image-size 64 --seed 3 -q
printf 'name = "b"\n[dataset]\ndirs = ["data"]\n[classes]\nspacing = 0.7\n[model]\nbackbone = "tiny-cnn"\n[train]\nimage_size = 32\nepochs = 1\n' > b.toml
"$G" run b.toml -q
mkdir models
cp runs/b/*/checkpoints/best.safetensors models/b.safetensors
view="$(ls data/images/*/0.jpg | head -1)"
python3 - "$view" <<'PY'
import sys
data = bytearray(open(sys.argv[1], "rb").read())
i = next(i for i in range(len(data) - 1) if data[i] == 0xFF and 0xC0 <= data[i + 1] <= 0xC2)
data[i + 5:i + 9] = bytes([0x75, 0x30, 0x75, 0x30])  # height, width: 30000
open("bomb.jpg", "wb").write(bytes(data))
PY
port=$((20000 + RANDOM % 20000))
"$G" serve --models models --port "$port" -q &
server=$!
url="http://127.0.0.1:$port/model/b/predict-images"
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/models" && break; sleep 0.1; done
curl -s -o /dev/null -w "ordinary request alone:        %{http_code} in %{time_total} s\n" -F "images=@$view" "$url"
bombs=()
for _ in $(seq 16); do bombs+=(-F "images=@bomb.jpg"); done
curl -s -o bombs.json -w "request with 16 bombs:         %{http_code} in %{time_total} s\n" "${bombs[@]}" "$url" &
bomber=$!
sleep 0.2
curl -s -o /dev/null -w "ordinary request beside bombs: %{http_code} in %{time_total} s\n" -F "images=@$view" "$url"
wait "$bomber"
echo "bomb answer: $(head -c 200 bombs.json)"

# Genuine heavy work: sixteen 4096 px photos (16.8 MP each) in one request.
"$G" synth --out big --locations 4 --image-size 4096 --seed 5 -q
heavy=()
for f in big/images/*/*.jpg; do heavy+=(-F "images=@$f"); done
curl -s -o heavy.json -w "request with 16 × 4096 px photos: %{http_code} in %{time_total} s\n" "${heavy[@]}" "$url" &
heavy_client=$!
sleep 0.2
curl -s -o /dev/null -w "ordinary request beside them:     %{http_code} in %{time_total} s\n" -F "images=@$view" "$url"
wait "$heavy_client"
