#!/usr/bin/env bash
# Install qatsweep into a virtual environment on one node of a `ray up` cluster.
#
# cluster/aws.yaml and cluster/onprem.yaml run this from their setup_commands, after
# file_mounts has copied the repository's pyproject.toml, README.md, src/ and cluster/ to
# ~/qatsweep and the caller's token file to ~/.ray/auth_token. `ray up` reruns setup on
# every update, so each step is idempotent.
#
# Inputs (environment):
#   RAY_VERSION    required: the exact Ray version of the machine that runs `ray up`; the
#                  launcher and every node must run the same Ray.
#   RAY_AUTH_MODE  "token" (what the configs pass) makes this script insist on a token file
#                  and persist the mode in ~/.bashrc for later shells on the node.
#   QATSWEEP_PYTHON, QATSWEEP_VENV, QATSWEEP_SRC  override python3, ~/qatsweep-venv and
#                  ~/qatsweep.
set -euo pipefail

: "${RAY_VERSION:?set RAY_VERSION to the Ray version that runs ray up (ray --version)}"
PYTHON="${QATSWEEP_PYTHON:-python3}"
VENV="${QATSWEEP_VENV:-$HOME/qatsweep-venv}"
SRC="${QATSWEEP_SRC:-$HOME/qatsweep}"
TOKEN_FILE="$HOME/.ray/auth_token"

# Ray reads the token file without checking its mode, and `ray get-auth-token --generate`
# creates it with the umask's mode (0644 under the usual 022). Whoever can read it can run
# code on the cluster, so keep it owner-only on every node.
if [ "${RAY_AUTH_MODE:-}" = "token" ] && [ ! -s "$TOKEN_FILE" ]; then
    echo "setup_node.sh: RAY_AUTH_MODE=token but $TOKEN_FILE is missing or empty;" \
        "generate it on the launching machine (ray get-auth-token --generate) and rerun" \
        "ray up" >&2
    exit 1
fi
if [ -e "$TOKEN_FILE" ]; then
    chmod 700 "$HOME/.ray"
    chmod 600 "$TOKEN_FILE"
fi

# A venv of the node's own python3 (3.10 or newer, as pyproject.toml requires). Ubuntu
# ships the venv module as a separate package.
if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PYTHON" -m venv "$VENV"; then
        sudo apt-get update -y
        sudo apt-get install -y python3-venv
        "$PYTHON" -m venv "$VENV"
    fi
fi
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install --quiet --upgrade pip

# How torch is chosen: a node whose NVIDIA driver answers `nvidia-smi -L` gets PyPI's
# torch, which on Linux x86_64 is the CUDA build (the CUDA runtime arrives as nvidia-*
# wheels; only the driver must be on the machine). Any other node gets the CPU-only build
# from PyTorch's CPU index, which is far smaller. Installing torch before qatsweep means
# pyproject.toml's open `torch>=2.4` is already satisfied and pip keeps this choice.
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "${PIP[@]}" install --quiet "torch>=2.4"
else
    "${PIP[@]}" install --quiet "torch>=2.4" --index-url https://download.pytorch.org/whl/cpu
fi

"${PIP[@]}" install --quiet "ray[default,tune]==${RAY_VERSION}"
# A regular (not editable) install: the copy under ~/qatsweep is replaced on each update.
"${PIP[@]}" install --quiet "$SRC"

# The launcher runs every later command (ray stop, ray start, the autoscaler's commands
# for workers) in an interactive login shell, which reads ~/.bashrc: activating the venv
# there puts this venv's `ray` and `qatsweep` first on PATH.
activate_line="source $VENV/bin/activate"
grep -qxF "$activate_line" "$HOME/.bashrc" 2>/dev/null || echo "$activate_line" >>"$HOME/.bashrc"
if [ "${RAY_AUTH_MODE:-}" = "token" ]; then
    # So that `ray status`, `ray job list` etc. typed on a node (ray attach) send the token.
    mode_line="export RAY_AUTH_MODE=token"
    grep -qxF "$mode_line" "$HOME/.bashrc" || echo "$mode_line" >>"$HOME/.bashrc"
fi

"$VENV/bin/python" - <<'EOF'
import ray
import torch

import qatsweep

print(
    f"qatsweep {qatsweep.__version__}, ray {ray.__version__}, torch {torch.__version__},"
    f" CUDA available: {torch.cuda.is_available()}"
)
EOF
