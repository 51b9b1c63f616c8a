import FleetTestSupport
import FleetWatch
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

extension WatchIntegration {
  @Suite("The full sync at a restart waits for an idle moment", .serialized, .enabled(if: hasRsync))
  struct StartFullSyncWaitTests {
    /// A restart with a change made while stopped: the catch-up scan's recheck is held (a wrapper
    /// around rsync), so the watcher is busy; the full sync at start waits for it and runs after.
    /// Once its record is gone (an overflow, out of watches, another target), it does not wait.
    @Test("at a restart the full sync waits while changes are sent, unless its record is gone")
    func theFullSyncAtARestartWaitsWhileBusy() async throws {
      let fixture = try EngineFixture()
      try FS.write(fixture.src, "base.txt", "there before")
      try await fixture.start()
      try await fixture.expectConverged()
      try await fixture.stop()
      #expect(access(fixture.state + "/last-full-sync", F_OK) == 0, "the full sync was not recorded")

      // Busy at start: what changed while stopped is rechecked, and the recheck is held.
      try FS.write(fixture.src, "while-down.txt", "made while no watcher ran")
      var control = try fixture.tmp.sub("control-1")
      fixture.config.rsyncPath = try liveHoldingRsync(in: control, source: fixture.src)
      try fixture.launch()
      #expect(
        try await eventually { access(control + "/live-held", F_OK) == 0 }, "\(fixture.engine.status())")
      let waiting = fixture.engine.status()
      #expect(waiting.fullSyncWaitsUntil != nil, "the full sync did not wait: \(waiting)")
      #expect(waiting.state == .initialSync)
      #expect(access(control + "/full-sync-started", F_OK) != 0, "the full sync started while busy")
      _ = FileManager.default.createFile(atPath: control + "/release", contents: nil)
      #expect(try await eventually { access(control + "/full-sync-started", F_OK) == 0 })
      try await fixture.waitWatching()
      try await fixture.expectConverged()
      #expect(fixture.engine.status().fullSyncWaitsUntil == nil)
      try await fixture.stop()

      // The record gone: the full sync starts at once, beside the held recheck.
      unlink(fixture.state + "/last-full-sync")
      try FS.write(fixture.src, "while-down-2.txt", "made while no watcher ran, again")
      control = try fixture.tmp.sub("control-2")
      fixture.config.rsyncPath = try liveHoldingRsync(in: control, source: fixture.src)
      try fixture.launch()
      #expect(try await eventually { access(control + "/live-held", F_OK) == 0 })
      #expect(
        try await eventually { access(control + "/full-sync-started", F_OK) == 0 },
        "the full sync waited without a record: \(fixture.engine.status())")
      #expect(fixture.engine.status().fullSyncWaitsUntil == nil)
      _ = FileManager.default.createFile(atPath: control + "/release", contents: nil)
      try await fixture.waitWatching()
      try await fixture.expectConverged()
      try await fixture.stop()
    }
  }
}

/// An rsync wrapper that holds every run with a path list (a live transfer or a recheck; not a dry
/// run) until `control/release` exists, and marks `control/full-sync-started` when a full sync of
/// `source` starts; everything runs rsync in the end.
private func liveHoldingRsync(in control: String, source: String) throws -> String {
  let path = control + "/rsync-holding-live"
  let script = """
    #!/bin/sh
    live=no
    full=no
    for arg in "$@"; do
      case "$arg" in
        --files-from=*) live=yes ;;
        '\(source)/') full=yes ;;
      esac
    done
    for arg in "$@"; do
      case "$arg" in
        -n|--dry-run|--list-only) live=no; full=no ;;
      esac
    done
    if [ "$live" = yes ]; then
      : > '\(control)/live-held'
      while [ ! -e '\(control)/release' ]; do sleep 0.05; done
    elif [ "$full" = yes ]; then
      : > '\(control)/full-sync-started'
    fi
    exec /usr/bin/rsync "$@"
    """
  try Data(script.utf8).write(to: URL(fileURLWithPath: path))
  chmod(path, 0o755)
  return path
}
