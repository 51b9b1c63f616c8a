import FleetTestSupport
import FleetWatch
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

extension WatchIntegration {
  /// Issue 9 §1: the source must be the source. Real files, a real rsync daemon, real inotify, and
  /// real mounts (bind mounts and tmpfs on the test's own temporary paths) for "not mounted".
  @Suite("Source guard: never replicate an absent source", .serialized, .enabled(if: hasRsync && isRoot))
  struct SourceGuardTests {
    @Test("restart on an empty mountpoint: backup untouched, held, resumes when the data is mounted again")
    func restartOnEmptyMountpoint() async throws {
      let (fixture, data, mount) = try await startOnMountedData()
      defer { try? mount.unmount() }
      try await fixture.stop()

      try mount.unmount()  // the data filesystem is not mounted: the source is an empty directory
      try fixture.launch()
      let hold = try await waitHeld(fixture.engine)
      #expect(hold.kind == .otherDirectory)
      expectHelpful(hold, fixture)
      #expect(fixture.engine.status().state == .sourceHeld)
      #expect(!fixture.engine.status().isHealthy)
      #expect(try countFiles(fixture.daemon.backup) == 200)
      #expect(try treeDifferences(data, fixture.daemon.backup).isEmpty)

      try FS.write(data, "d0/while-held.txt", "written while held\n")
      try FS.write(data, "d1/f1.txt", "changed while held\n")
      unlink(data + "/d2/f2.txt")
      try mount.rebind(data)
      try await waitResumed(fixture.engine, fullSyncsBefore: 0)
      try await fixture.expectConverged()
      #expect(FileManager.default.fileExists(atPath: fixture.daemon.backup + "/d0/while-held.txt"))
      #expect(fixture.engine.status().isHealthy)
      try await fixture.stop()
      try mount.unmount()
    }

    @Test("a bind-mounted source unmounted while running: held, resumes and watches again when mounted")
    func unmountedWhileRunning() async throws {
      let (fixture, data, mount) = try await startOnMountedData()
      defer { try? mount.unmount() }
      let before = fixture.engine.status().fullSyncs

      try mount.unmount()
      let hold = try await waitHeld(fixture.engine)
      #expect(hold.kind == .otherDirectory)
      #expect(try treeDifferences(data, fixture.daemon.backup).isEmpty)
      try FS.write(data, "d3/while-unmounted.txt", "written while unmounted\n")

      try mount.rebind(data)
      try await waitResumed(fixture.engine, fullSyncsBefore: before)
      try await fixture.expectConverged()
      // The watches are back: a change is replicated without a full sync.
      try FS.write(fixture.src, "after.txt", "after the source came back\n")
      try await fixture.expectConverged()
      try await fixture.stop()
      try mount.unmount()
    }

    @Test(
      "a tmpfs source unmounted while running (IN_UNMOUNT): held, another filesystem stays held until accepted"
    )
    func tmpfsUnmountedThenAccepted() async throws {
      let fixture = try EngineFixture()
      var mount = try TestMount.tmpfs(on: fixture.src)
      defer { try? mount.unmount() }
      try fill(fixture.src, files: 20)
      try await fixture.start()
      try await fixture.expectConverged()
      let recordPath = fixture.state + "/" + SourceIdentity.fileName
      let recorded = try Data(contentsOf: URL(fileURLWithPath: recordPath))
      let before = fixture.engine.status().fullSyncs

      try mount.unmount()
      let hold = try await waitHeld(fixture.engine)
      #expect(hold.kind == .otherFilesystem)
      #expect(try countFiles(fixture.daemon.backup) == 20)

      // Another filesystem with other data is not ours: still held, even though it is not empty.
      mount = try TestMount.tmpfs(on: fixture.src)
      try FS.write(fixture.src, "other.txt", "another filesystem\n")
      try await waitFor("a check of the new filesystem that still holds") {
        let h = fixture.engine.status().sourceHold
        let found = "found the directory inode [0-9]+ on tmpfs filesystem [0-9a-f]+\\."
        return h?.kind == .otherFilesystem && h?.message.range(of: found, options: .regularExpression) != nil
      }
      #expect(try countFiles(fixture.daemon.backup) == 20)

      let request = fixture.state + "/" + acceptRequestFile
      try Data().write(to: URL(fileURLWithPath: request))
      try await waitResumed(fixture.engine, fullSyncsBefore: before)
      try await fixture.expectConverged()
      #expect(!FileManager.default.fileExists(atPath: request))
      #expect(try Data(contentsOf: URL(fileURLWithPath: recordPath)) != recorded)
      #expect(fixture.engine.status().isHealthy)
      try await fixture.stop()
      try mount.unmount()
    }

    @Test("the source deleted while running (rm -rf): backup untouched, held; accepted when re-created")
    func deletedWhileRunning() async throws {
      let fixture = try EngineFixture()
      // One batch holds the whole `rm -rf`: the guard looks when it is sent, after the root is gone.
      // Deletes the engine saw before that would be an operator's deletes, and replicated.
      fixture.config.batchDelay = .seconds(3)
      let reference = try fixture.tmp.sub("reference")
      try fill(reference, files: 200)
      try fill(fixture.src, files: 200)
      try await fixture.start()
      try await fixture.expectConverged()

      let before = fixture.engine.status().fullSyncs
      try FileManager.default.removeItem(atPath: fixture.src)
      // Emptied first (rm -rf empties the directory, then removes it), then gone.
      _ = try await waitHeld(fixture.engine)
      try await waitFor("a hold for the missing source") {
        fixture.engine.status().sourceHold?.kind == .missing
      }
      #expect(try treeDifferences(reference, fixture.daemon.backup).isEmpty)

      try FS.mkdir(fixture.src, "")
      try fill(fixture.src, files: 200)
      try FS.write(fixture.src, "restored.txt", "restored\n")
      let request = fixture.state + "/" + acceptRequestFile
      try Data().write(to: URL(fileURLWithPath: request))
      try await waitResumed(fixture.engine, fullSyncsBefore: before)
      try await fixture.expectConverged()
      try FS.write(fixture.src, "after.txt", "watched again\n")
      try await fixture.expectConverged()
      try await fixture.stop()
    }

    @Test("the source moved away while running: backup untouched, held; resumes when moved back")
    func movedAwayWhileRunning() async throws {
      let fixture = try EngineFixture()
      let reference = try fixture.tmp.sub("reference")
      try fill(reference, files: 200)
      try fill(fixture.src, files: 200)
      try await fixture.start()
      try await fixture.expectConverged()

      let before = fixture.engine.status().fullSyncs
      let away = fixture.tmp.path + "/src.old"
      try FS.rename(fixture.src, away)
      let hold = try await waitHeld(fixture.engine)
      #expect(hold.kind == .missing)
      #expect(try treeDifferences(reference, fixture.daemon.backup).isEmpty)
      try FS.write(away, "d1/while-away.txt", "written while away\n")

      try FS.rename(away, fixture.src)
      try await waitResumed(fixture.engine, fullSyncsBefore: before)
      try await fixture.expectConverged()
      #expect(FileManager.default.fileExists(atPath: fixture.daemon.backup + "/d1/while-away.txt"))
      try FS.write(fixture.src, "after.txt", "watched again\n")
      try await fixture.expectConverged()
      try await fixture.stop()
    }

    @Test("everything in the source deleted while running: held as emptied; accepting it empties the backup")
    func emptiedWhileRunning() async throws {
      let fixture = try EngineFixture()
      fixture.config.batchDelay = .seconds(3)  // one batch holds every delete (see deletedWhileRunning)
      try fill(fixture.src, files: 50)
      try await fixture.start()
      try await fixture.expectConverged()

      let before = fixture.engine.status().fullSyncs
      for name in try FileManager.default.contentsOfDirectory(atPath: fixture.src) {
        try FileManager.default.removeItem(atPath: fixture.src + "/" + name)
      }
      let hold = try await waitHeld(fixture.engine)
      #expect(hold.kind == .emptied)
      #expect(try countFiles(fixture.daemon.backup) == 50)

      let request = fixture.state + "/" + acceptRequestFile
      try Data().write(to: URL(fileURLWithPath: request))
      try await waitResumed(fixture.engine, fullSyncsBefore: before)
      try await fixture.expectConverged()
      #expect(try countFiles(fixture.daemon.backup) == 0)
      try await fixture.stop()
    }

    @Test("first start on an empty source while the backup holds data: held until the data is there")
    func firstStartEmptySourceBackupHoldsData() async throws {
      let fixture = try EngineFixture()
      try fill(fixture.daemon.backup, files: 30)
      let data = try fixture.tmp.sub("data")
      try fill(data, files: 30)
      try fixture.launch()
      let hold = try await waitHeld(fixture.engine)
      #expect(hold.kind == .backupNotEmpty)
      expectHelpful(hold, fixture)
      #expect(try countFiles(fixture.daemon.backup) == 30)
      #expect(!FileManager.default.fileExists(atPath: fixture.state + "/" + SourceIdentity.fileName))

      try FS.write(data, "new.txt", "arrived with the mount\n")
      let mount = try TestMount.bind(data, on: fixture.src)
      defer { try? mount.unmount() }
      try await waitResumed(fixture.engine, fullSyncsBefore: 0)
      try await fixture.expectConverged()
      #expect(FileManager.default.fileExists(atPath: fixture.state + "/" + SourceIdentity.fileName))
      try await fixture.stop()
      try mount.unmount()
    }
  }
}

/// Writes `files` files over four sub-directories `d0`...`d3` of `dir`: `dK/fN.txt`, same content
/// for the same name every time.
/// An engine whose source is a bind mount of `data` (200 files), started and converged.
private func startOnMountedData() async throws -> (EngineFixture, data: String, TestMount) {
  let fixture = try EngineFixture()
  let data = try fixture.tmp.sub("data")
  try fill(data, files: 200)
  let mount = try TestMount.bind(data, on: fixture.src)
  do {
    try await fixture.start()
    try await fixture.expectConverged()
  } catch {
    try? mount.unmount()
    throw error
  }
  return (fixture, data, mount)
}

private func fill(_ dir: String, files: Int) throws {
  for i in 0..<files {
    try FS.mkdir(dir, "d\(i % 4)")
    try FS.write(dir, "d\(i % 4)/f\(i).txt", "file \(i)\n" + String(repeating: "x", count: i))
  }
}

/// Regular files below `dir`.
private func countFiles(_ dir: String) throws -> Int {
  let keys: [URLResourceKey] = [.isRegularFileKey]
  guard
    let walk = FileManager.default.enumerator(at: URL(fileURLWithPath: dir), includingPropertiesForKeys: keys)
  else { throw POSIXErrorBox(ENOENT, dir) }
  var count = 0
  for case let url as URL in walk where try url.resourceValues(forKeys: Set(keys)).isRegularFile == true {
    count += 1
  }
  return count
}

/// Waits until the engine holds; returns the hold.
private func waitHeld(_ engine: WatchEngine) async throws -> SourceHold {
  try await waitFor("the source guard to hold (status: \(engine.status()))") {
    engine.status().state == .sourceHeld && engine.status().sourceHold != nil
  }
  guard let hold = engine.status().sourceHold else { throw WaitTimeout(what: "a hold that stays") }
  return hold
}

/// Waits until the hold is over and a full sync after it finished.
private func waitResumed(_ engine: WatchEngine, fullSyncsBefore: UInt64) async throws {
  try await waitFor("the engine to resume with a full sync (status: \(engine.status()))") {
    let s = engine.status()
    return s.sourceHold == nil && s.state != .sourceHeld && s.fullSyncs > fullSyncsBefore
  }
}

/// A hold says where, what to check, and how to accept the source as it is.
private func expectHelpful(
  _ hold: SourceHold, _ fixture: EngineFixture, sourceLocation: SourceLocation = #_sourceLocation
) {
  #expect(hold.message.contains(fixture.src), sourceLocation: sourceLocation)
  #expect(hold.message.contains("findmnt"), sourceLocation: sourceLocation)
  #expect(
    hold.message.contains(fixture.state + "/" + acceptRequestFile),
    sourceLocation: sourceLocation)
}

/// The file `fleetsync resume` writes into a watcher's state directory to accept its source as it is
/// (FleetWire's `OperatorRequest.acceptSource`), spelled out: the name is a contract between binaries.
private let acceptRequestFile = "request.accept-source"
