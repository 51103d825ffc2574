#!/bin/sh
# Makes the screenshots of the README's first lines: lanchat starting in a
# terminal (terminal.png), the projector page /join (join.png), and
# `lanchat join` chatting in a terminal (client.png).
#
# Usage (as root, Linux): sh docs/screenshots/join.sh target/release/lanchat
#
# Everything runs inside a network namespace of its own, with a made-up
# LAN (192.168.1.23 on a veth pair, the address of the README's story), so
# the mDNS announcement and the page reach nobody. The terminal is tmux;
# its screen, colours included, is turned into HTML and photographed by
# headless Chromium (/usr/bin/chromium), like the page.
set -eu
LANCHAT=$(realpath "${1:-target/release/lanchat}")
OUT=$(cd "$(dirname "$0")" && pwd)
if [ -z "${LANCHAT_SCREENSHOT_NETNS:-}" ]; then
    exec env LANCHAT_SCREENSHOT_NETNS=1 unshare --net -- sh "$0" "$LANCHAT"
fi

ip link set lo up
ip link add lan0 type veth peer name lan1
ip addr add 192.168.1.23/24 dev lan0
ip link set lan0 up
ip link set lan1 up
ip route add default via 192.168.1.1 dev lan0

WORK=$(mktemp -d)
SOCKET="$WORK/tmux"
PIDS=""
cleanup() {
    tmux -S "$SOCKET" kill-server 2>/dev/null || true
    for pid in $PIDS; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# Waits (at most 10 s) until the tmux pane shows $1.
wait_for_screen() {
    for _ in $(seq 100); do
        if tmux -S "$SOCKET" capture-pane -p -t "$2" | grep -q "$1"; then return 0; fi
        sleep 0.1
    done
    echo "never saw: $1" >&2
    return 1
}

# A terminal screen (tmux capture with colours) as an HTML page.
screen_to_html() {
    python3 - "$1" "$2" <<'EOF'
import html, re, sys
text = open(sys.argv[1], encoding="utf-8").read().rstrip("\n")
palette = {30: "#000", 31: "#c0392b", 32: "#1e8449", 33: "#b7950b", 34: "#2e59a8",
           35: "#8e44ad", 36: "#138d75", 37: "#ccc", 90: "#777", 97: "#fff"}
back = {40: "#000", 47: "#ccc", 100: "#777", 107: "#fff"}
out, fg, bg, bold = [], None, None, False
for part in re.split(r"(\x1b\[[0-9;]*m)", text):
    if part.startswith("\x1b["):
        codes = [int(c) if c else 0 for c in part[2:-1].split(";")]
        for c in codes:
            if c == 0: fg, bg, bold = None, None, False
            elif c == 1: bold = True
            elif c == 39: fg = None
            elif c == 49: bg = None
            elif c in palette: fg = palette[c]
            elif c in back: bg = back[c]
        continue
    style = (f"color:{fg};" if fg else "") + (f"background:{bg};" if bg else "") + ("font-weight:bold;" if bold else "")
    out.append(f'<span style="{style}">{html.escape(part)}</span>' if style else html.escape(part))
page = """<!doctype html><meta charset="utf-8"><style>
body{margin:0;background:#1e1e2e}
pre{margin:0;padding:14px 16px;color:#e4e4ec;font:15px/1.0 'DejaVu Sans Mono',monospace}
</style><pre>%s</pre>""" % "".join(out)
open(sys.argv[2], "w", encoding="utf-8").write(page)
EOF
}

shoot() { # URL FILE WIDTH HEIGHT
    chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
        --window-size="$3,$4" --screenshot="$2" "$1" >/dev/null 2>&1
}

# 1. The server starts in a terminal: listening line, host link, QR code.
tmux -S "$SOCKET" new-session -d -s server -x 80 -y 30 \
    "cd $WORK && $LANCHAT --port 8000; sleep 600"
wait_for_screen "scan to join" server
tmux -S "$SOCKET" capture-pane -e -N -p -t server > "$WORK/server.ans"
screen_to_html "$WORK/server.ans" "$WORK/server.html"
shoot "file://$WORK/server.html" "$OUT/terminal.png" 780 560

# 2. Three people online (two of them have said something), and the
#    projector page. Their input is a pipe this script holds open: when it
#    ends, they see the end of their input and leave by themselves.
n=0
for who in "Ana:Hello everyone!" "Ben:Who brought the slides?" "Dan:"; do
    n=$((n + 1))
    mkfifo "$WORK/in$n"
    "$LANCHAT" join http://192.168.1.23:8000 --name "${who%%:*}" < "$WORK/in$n" > /dev/null 2>&1 &
    PIDS="$PIDS $!"
    eval "exec $((n + 2))>\"\$WORK/in$n\""
    [ -n "${who#*:}" ] && printf '%s\n' "${who#*:}" >&$((n + 2))
    for _ in $(seq 100); do
        curl -s http://192.168.1.23:8000/healthz | grep -q "\"users\":$n" && break
        sleep 0.1
    done
done
shoot "http://192.168.1.23:8000/join" "$OUT/join.png" 1280 800

# 3. `lanchat join` in a terminal, chatting with them.
tmux -S "$SOCKET" new-session -d -s client -x 76 -y 12 \
    "$LANCHAT join http://192.168.1.23:8000 --name Chloé; sleep 600"
wait_for_screen "Type a line" client
tmux -S "$SOCKET" send-keys -t client "I did: they are on the shared drive" Enter
wait_for_screen "Chloé: I did" client
tmux -S "$SOCKET" send-keys -t client "/msg Ben see you at the break" Enter
wait_for_screen "Ben: see you" client
printf 'Thanks Chloé!\n' >&4 # Ben, live
wait_for_screen "Ben: Thanks" client
tmux -S "$SOCKET" send-keys -t client "/who" Enter
wait_for_screen "online (" client
tmux -S "$SOCKET" capture-pane -e -N -p -t client > "$WORK/client.ans"
screen_to_html "$WORK/client.ans" "$WORK/client.html"
shoot "file://$WORK/client.html" "$OUT/client.png" 740 240
echo "wrote $OUT/terminal.png $OUT/join.png $OUT/client.png"
