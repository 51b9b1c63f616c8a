import FleetCore
import FleetTestSupport
import FleetWatch
import Foundation
import Testing

@testable import FleetProvision

#if canImport(Glibc)
  import Glibc
#endif

/// A ``RemoteHost`` that is this machine: verify's commands run in `/bin/sh`, on a thread of their
/// own, against a real rsync daemon.
struct ThisMachine: RemoteHost {
  func run(_ command: String) async throws -> CommandOutput {
    try await withCheckedThrowingContinuation { continuation in
      Thread.detachNewThread {
        continuation.resume(
          with: Result {
            let result = try CLI.runProcess("/bin/sh", ["-c", command])
            return CommandOutput(status: result.status, stdout: result.stdout, stderr: result.stderr)
          })
      }
    }
  }
  func write(_ bytes: [UInt8], to path: String, mode: Int) async throws { throw FleetError(.io, "not used") }
  func upload(localPath: String, to path: String, mode: Int) async throws {
    throw FleetError(.io, "not used")
  }
  func read(_ path: String) async throws -> [UInt8]? { throw FleetError(.io, "not used") }
  func close() async {}
}

/// `fleetsync verify`'s comparison and repair against a real rsync daemon (run as root, so owners
/// and modes are kept as on a `fake super` module), on real files.
extension WatchIntegration {
  @Suite(.enabled(if: isRoot, "needs root"))
  struct VerifyDaemonTests {
    let daemon: RsyncDaemon
    let tmp: TempDir
    let source: String
    let state: String

    init() throws {
      daemon = try RsyncDaemon()
      tmp = try TempDir("fleetsync-verify")
      source = try tmp.sub("src")
      state = try tmp.sub("state")
    }

    var target: VerifyTarget {
      VerifyTarget(
        instance: "data:bk:backup", source: source, target: daemon.target, passwordFile: daemon.passwordFile,
        stateDir: state, excludes: ["*.tmp"], keepsVersions: true)
    }

    func verify(repair: Bool = false, delete: Bool = false, sample: Double? = nil) async -> DirectoryVerify {
      var request = VerifyRequest()
      request.repair = repair
      request.delete = delete
      request.samplePercent = sample
      return await VerifyRun(host: ThisMachine(), hostName: "local", request: request).verify(target)
    }

    /// `count` files under `src/d*/`, a name with a space and one with a newline, then a full
    /// copy on the backup the way the watcher makes it.
    func makeTree(count: Int = 40) throws {
      for index in 0..<count {
        let dir = source + "/d\(index % 4)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "content \(index)\n".write(toFile: "\(dir)/f\(index).txt", atomically: false, encoding: .utf8)
      }
      try "spaced\n".write(toFile: source + "/with space.txt", atomically: false, encoding: .utf8)
      try "newline\n".write(toFile: source + "/new\nline.txt", atomically: false, encoding: .utf8)
      try "skipped\n".write(toFile: source + "/scratch.tmp", atomically: false, encoding: .utf8)
      let copy = try CLI.runProcess(
        "/usr/bin/rsync",
        [
          "-aAXHS", "--numeric-ids", "--exclude=*.tmp", "--password-file=\(daemon.passwordFile)",
          source + "/",
          daemon.target.url + "/",
        ])
      try #require(copy.status == 0, "initial copy: \(copy.stderr)")
    }

    /// Rewrites a backup file with other bytes of the same size and puts its mtime back: only a
    /// checksum sees the change.
    func corruptKeepingSizeAndTime(_ relative: String) throws {
      let path = daemon.backup + "/" + relative
      var info = stat()
      try #require(stat(path, &info) == 0)
      let original = try String(contentsOfFile: path, encoding: .utf8)
      try String(original.reversed()).write(toFile: path, atomically: false, encoding: .utf8)
      var times = [info.st_atim, info.st_mtim]
      try #require(utimensat(AT_FDCWD, path, &times, 0) == 0)
    }

    func write(_ path: String, _ text: String) throws {
      try FileManager.default.createDirectory(
        atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
      try text.write(toFile: path, atomically: false, encoding: .utf8)
    }

    @Test func findsAChecksumOnlyChangeRepairsItKeepsTheOldCopyAndIgnoresVersions() async throws {
      defer { tmp.remove() }
      try makeTree()
      #expect(await verify().outcome == .clean)
      try corruptKeepingSizeAndTime("d1/f1.txt")
      try corruptKeepingSizeAndTime("new\nline.txt")
      try FileManager.default.removeItem(atPath: daemon.backup + "/d2/f2.txt")
      try write(daemon.backup + "/only-on-backup.txt", "extra\n")
      try write(daemon.backup + "/.fleetsync-versions/2026-11-28T00-05-01.123Z/d1/f1.txt", "old\n")

      let found = await verify()
      #expect(found.outcome == .drift, "\(found.detail)")
      let tally = try #require(found.found)
      #expect(tally.compared == 42)
      #expect(tally.differing == 2)
      #expect(Set(tally.differingPaths) == ["d1/f1.txt", ##"new\#012line.txt"##])
      #expect(tally.missingPaths == ["d2/f2.txt"])
      #expect(tally.extraPaths == ["only-on-backup.txt"], "versions are not extra")
      #expect(tally.attributes == 0)

      let repaired = await verify(repair: true)
      #expect(repaired.outcome == .drift, "extras are kept without --delete: \(repaired.detail)")
      #expect(repaired.detail.contains("add --delete"))
      #expect(try String(contentsOfFile: daemon.backup + "/d1/f1.txt", encoding: .utf8) == "content 1\n")
      #expect(FileManager.default.fileExists(atPath: daemon.backup + "/d2/f2.txt"))
      #expect(FileManager.default.fileExists(atPath: daemon.backup + "/only-on-backup.txt"))
      let kept = try versions(of: "d1/f1.txt")
      #expect(kept.count == 1, "the replaced copy is kept as a version")
      #expect(kept.first.map { String($0.reversed()) } == "content 1\n")

      let deleted = await verify(repair: true, delete: true)
      #expect(deleted.outcome == .repaired, "\(deleted.detail)")
      #expect(!FileManager.default.fileExists(atPath: daemon.backup + "/only-on-backup.txt"))
      let after = await verify()
      #expect(after.outcome == .clean, "\(after.detail)")
      #expect(
        FileManager.default.fileExists(
          atPath: daemon.backup + "/.fleetsync-versions/2026-11-28T00-05-01.123Z/d1/f1.txt"),
        "a repair with --delete keeps the versions")
    }

    /// The contents of every version of `relative` under the backup's `.fleetsync-versions/STAMP/`,
    /// leaving out the one the test planted.
    func versions(of relative: String) throws -> [String] {
      let root = daemon.backup + "/.fleetsync-versions"
      return try FileManager.default.contentsOfDirectory(atPath: root)
        .filter { $0 != "2026-11-28T00-05-01.123Z" }
        .compactMap { try? String(contentsOfFile: "\(root)/\($0)/\(relative)", encoding: .utf8) }
    }

    @Test func aRepairFromAnEmptiedSourceIsRefusedAndTheBackupKeepsEverything() async throws {
      defer { tmp.remove() }
      try makeTree()
      for name in try FileManager.default.contentsOfDirectory(atPath: source) {
        try FileManager.default.removeItem(atPath: source + "/" + name)
      }
      let refused = await verify(repair: true, delete: true)
      #expect(refused.outcome == .refused, "\(refused.detail)")
      #expect(refused.detail.contains("is empty while the backup holds"))
      #expect(refused.detail.contains("--accept-source"))
      #expect(FileManager.default.fileExists(atPath: daemon.backup + "/d3/f3.txt"))
      #expect(!FileManager.default.fileExists(atPath: daemon.backup + "/.fleetsync-versions"))
    }

    @Test func aRepairFromAnotherDirectoryThanTheWatchersSourceIsRefused() async throws {
      defer { tmp.remove() }
      try makeTree()
      var info = stat()
      try #require(stat(source, &info) == 0)
      let record = """
        {"device":\(info.st_dev),"empty":false,"filesystem":\(info.st_dev),"filesystemType":"ext4",\
        "inode":\(info.st_ino)}
        """
      try record.write(toFile: state + "/" + SourceIdentity.fileName, atomically: true, encoding: .utf8)
      // The source replaced by another directory holding one file (a wrong mount, a restore gone
      // wrong). The old one is moved away, not deleted, so its inode cannot be reused by the new one.
      try FileManager.default.moveItem(atPath: source, toPath: source + ".old")
      try write(source + "/lonely.txt", "not the data\n")
      let refused = await verify(repair: true, delete: true)
      #expect(refused.outcome == .refused, "\(refused.detail)")
      #expect(refused.detail.contains("not the directory the watcher recorded"))
      #expect(FileManager.default.fileExists(atPath: daemon.backup + "/d3/f3.txt"))
      #expect(!FileManager.default.fileExists(atPath: daemon.backup + "/lonely.txt"))
    }

    @Test func aSampleComparesThatShareOfTheFiles() async throws {
      defer { tmp.remove() }
      try makeTree(count: 98)
      try FileManager.default.removeItem(atPath: source + "/scratch.tmp")
      try corruptKeepingSizeAndTime("d0/f0.txt")
      let half = await verify(sample: 50)
      #expect(half.sample == 50)
      #expect(half.found?.compared == 50, "\(half.detail)")
      #expect((half.found?.differing ?? 0) <= 1)
      #expect(half.found?.extra == 0)
      let all = await verify(sample: 100)
      #expect(all.found?.compared == 100)
      #expect(all.found?.differingPaths == ["d0/f0.txt"])
    }
  }
}

extension WatchIntegration {
  /// Verify while the watcher replicates: it must neither fail nor stop replication, and once
  /// the writes stop and the backup has converged it is clean.
  @Suite(.enabled(if: isRoot, "needs root"))
  struct VerifyWhileReplicatingTests {
    @Test func verifyRunsBesideLiveReplication() async throws {
      let fixture = try EngineFixture()
      for index in 0..<200 {
        try "seed \(index)\n".write(
          toFile: fixture.src + "/seed-\(index)", atomically: false, encoding: .utf8)
      }
      try await fixture.start()
      let target = VerifyTarget(
        instance: "src:local:backup", source: fixture.src, target: fixture.daemon.target,
        passwordFile: fixture.daemon.passwordFile, stateDir: fixture.state, excludes: [], keepsVersions: true)
      let run = VerifyRun(host: ThisMachine(), hostName: "local", request: VerifyRequest())
      let source = fixture.src
      let writer = Task.detached {
        for index in 0..<300 {
          try "live \(index)\n".write(toFile: source + "/live-\(index)", atomically: false, encoding: .utf8)
          try await Task.sleep(for: .milliseconds(5))
        }
      }
      let during = await run.verify(target)
      #expect(during.outcome == .clean || during.outcome == .drift, "\(during.detail)")
      #expect((during.found?.compared ?? 0) >= 200, "\(during.detail)")
      try await writer.value
      try await fixture.expectConverged()
      let after = await run.verify(target)
      #expect(after.outcome == .clean, "\(after.detail)")
      #expect(after.found?.compared == 500)
      try await fixture.stop()
    }
  }
}
