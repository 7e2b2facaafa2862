"""The edgequant process itself: signals, temporary folders, native logs, progress, parallel work, caches."""
