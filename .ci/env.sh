# Shared settings for .ci scripts (sourced, not run).
export PATH="$HOME/.cargo/bin:$PATH"
# One build cache outside the clone, reused by every clone on this machine.
export BUILD_CACHE_DIR="${BUILD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/portcullis}"
# cargo-leptos and cargo test resolve different features for shared dependencies (the
# tests' dev-dependencies add some), so each gets its own target dir: alternating in one
# would recompile much of the tree every time.
export SITE_TARGET_DIR="$BUILD_CACHE_DIR/target"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$BUILD_CACHE_DIR/target-test}"
# cargo-leptos sets this for debug builds; setting it for every cargo call keeps one cache.
export RUSTFLAGS="--cfg erase_components"
# Leptos looks for the compiled site here (cargo-leptos writes it under the workspace).
export LEPTOS_SITE_ROOT="${LEPTOS_SITE_ROOT:-$PWD/target/site}"
step() { printf '\n\033[1;34m==> %s\033[0m\n' "$*"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
