"""The emulated arm64 environment: set-up, the counting qemu plugin, and the runner."""
