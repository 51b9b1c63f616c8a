import FleetCore
import FleetTestSupport
import FleetWatch
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

extension WatchIntegration {
  /// The cap on the run that applies granted deletes, with a real rsync daemon: whatever the source
  /// does between the count and that run, the backup loses no more than the delete limit granted.
  @Suite("the delete cap", .serialized, .enabled(if: hasRsync))
  struct DeleteCapTests {
    /// `gone/` (10 files and its directory, 11 deletes) is removed while no watcher runs; the full
    /// sync at start counts it and is granted 11 of a limit of 15. Just before the applying run,
    /// `late/` (11 more) vanishes too: rsync would now delete 22, and must stop at the 11 granted.
    @Test func filesGoneAfterTheCountStopAtTheGrant() async throws {
      let fixture = try EngineFixture()
      for dir in ["gone", "late"] {
        try FS.mkdir(fixture.src, dir)
        for i in 0..<10 { try FS.write(fixture.src, "\(dir)/f\(i)", "\(dir) \(i)") }
      }
      try FS.write(fixture.src, "keep.txt", "stays")
      try await fixture.start()
      try await fixture.expectConverged()
      try await fixture.stop()

      try FileManager.default.removeItem(atPath: fixture.src + "/gone")
      let control = try fixture.tmp.sub("control")
      fixture.config.maxDelete = DeleteLimit(count: 15, percent: nil)
      fixture.config.rsyncPath = try sourceChangingRsync(
        in: fixture.tmp.path, control: control, vanishing: fixture.src + "/late")
      try fixture.launch()
      let applied = try await eventually {
        access(control + "/late-removed", F_OK) == 0 && fixture.engine.status().fullSyncs >= 1
      }
      #expect(applied, "the full sync never applied its deletes: \(fixture.engine.status())")

      let left = entries(fixture.daemon.backup, ["gone", "late"])
      #expect(22 - left <= 15, "\(22 - left) deletes on the backup, more than the limit of 15")
      #expect(22 - left >= 11, "the 11 granted deletes were not applied: \(left) entries left")
      #expect(FileManager.default.fileExists(atPath: fixture.daemon.backup + "/keep.txt"))
      try await fixture.stop()
    }
  }
}

/// Files and directories under each of `dirs` of `root`, each directory included.
private func entries(_ root: String, _ dirs: [String]) -> Int {
  dirs.reduce(0) { sum, dir in
    let path = root + "/" + dir
    guard FileManager.default.fileExists(atPath: path) else { return sum }
    return sum + 1 + ((try? FileManager.default.subpathsOfDirectory(atPath: path).count) ?? 0)
  }
}

/// An rsync wrapper that removes `vanishing` (once) just before the first run that applies granted
/// deletes (`--max-delete=N`, N > 0, not a dry run), then runs the real rsync.
private func sourceChangingRsync(in dir: String, control: String, vanishing: String) throws -> String {
  let path = dir + "/rsync-changing-the-source"
  let script = """
    #!/bin/sh
    applying=no
    for arg in "$@"; do
      case "$arg" in
        --max-delete=0|--dry-run) applying=no; break ;;
        --max-delete=*) applying=yes ;;
      esac
    done
    if [ "$applying" = yes ] && [ ! -e '\(control)/late-removed' ]; then
      rm -rf '\(vanishing)'
      : > '\(control)/late-removed'
    fi
    exec /usr/bin/rsync "$@"

    """
  try script.write(toFile: path, atomically: true, encoding: .utf8)
  guard chmod(path, 0o755) == 0 else { throw POSIXErrorBox(errno) }
  return path
}
