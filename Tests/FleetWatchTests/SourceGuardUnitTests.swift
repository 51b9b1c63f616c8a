import Foundation
import Testing

@testable import FleetWatch

#if canImport(Glibc)
  import Glibc
#endif

@Suite("Source guard: the policy, the observation of a real directory, the backup listing")
struct SourceGuardUnitTests {
  static let recorded = SourceIdentity(
    filesystem: 0xABC, filesystemType: "ext4", device: 2049, inode: 100, empty: false)

  func present(_ change: (inout SourceIdentity) -> Void) -> SourceObservation {
    var id = Self.recorded
    change(&id)
    return .present(id)
  }

  @Test func theRecordedSourcePasses() {
    let same = present { _ in }
    #expect(SourceGuard.verdict(same, record: Self.recorded) == .pass(Self.recorded))
    // A block device's number may change across boots; the filesystem id does not.
    let renumbered = present { $0.device = 2050 }
    #expect(SourceGuard.verdict(renumbered, record: Self.recorded) == .pass(with { $0.device = 2050 }))
  }

  @Test func anythingElseHolds() {
    #expect(SourceGuard.verdict(.missing(ENOENT), record: Self.recorded) == .hold(.missing))
    #expect(SourceGuard.verdict(.notDirectory, record: Self.recorded) == .hold(.missing))
    #expect(SourceGuard.verdict(.unreadable(EACCES), record: Self.recorded) == .hold(.missing))
    #expect(
      SourceGuard.verdict(present { $0.filesystem = 0xDEF }, record: Self.recorded) == .hold(.otherFilesystem)
    )
    #expect(
      SourceGuard.verdict(present { $0.filesystemType = "tmpfs" }, record: Self.recorded)
        == .hold(.otherFilesystem))
    #expect(SourceGuard.verdict(present { $0.inode = 7 }, record: Self.recorded) == .hold(.otherDirectory))
    #expect(SourceGuard.verdict(present { $0.empty = true }, record: Self.recorded) == .hold(.emptied))
    // Another directory that is empty too: the identity is what is reported.
    let mountpoint = present {
      $0.inode = 7
      $0.empty = true
    }
    #expect(SourceGuard.verdict(mountpoint, record: Self.recorded) == .hold(.otherDirectory))
  }

  @Test func withoutARecordAnEmptySourceAsksTheBackup() {
    let empty = with { $0.empty = true }
    #expect(SourceGuard.verdict(.present(empty), record: nil) == .checkBackup(empty))
    #expect(SourceGuard.verdict(.present(Self.recorded), record: nil) == .pass(Self.recorded))
    #expect(SourceGuard.verdict(.missing(ENOENT), record: nil) == .hold(.missing))
    // Recorded empty (a new source, or one accepted empty): empty is what it is.
    #expect(SourceGuard.verdict(.present(empty), record: empty) == .pass(empty))
  }

  @Test func aHoldSaysWhatToCheckAndHowToAccept() {
    let config = WatchConfig(
      source: "/srv/data", target: RsyncTarget(user: "u", host: "b", module: "m"), stateDir: "/var/lib/x y")
    let text = SourceGuard.message(
      .otherDirectory, config: config, record: Self.recorded, now: present { $0.inode = 7 })
    #expect(text.contains("/srv/data"))
    #expect(text.contains("Expected the directory inode 100 on ext4 filesystem abc"))
    #expect(text.contains("found the directory inode 7 on ext4 filesystem abc."))
    #expect(text.contains("findmnt -T '/srv/data'"))
    #expect(text.contains("touch '/var/lib/x y/request.accept-source'"))
  }

  @Test func observesARealDirectory() throws {
    let dir = try makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let none = ExcludeMatcher([])
    guard case .present(let empty) = SourceObservation.observe(dir, excludes: none) else {
      Issue.record("a directory is present")
      return
    }
    #expect(empty.empty)
    #expect(empty.filesystemType != "unknown")
    try "x".write(toFile: dir + "/cache.tmp", atomically: false, encoding: .utf8)
    guard
      case .present(let onlyExcluded) = SourceObservation.observe(dir, excludes: ExcludeMatcher(["*.tmp"]))
    else { return }
    #expect(onlyExcluded.empty)
    guard case .present(let full) = SourceObservation.observe(dir, excludes: none) else { return }
    #expect(!full.empty && full.isSameDirectory(as: empty))

    try FileManager.default.createDirectory(atPath: dir + "/other", withIntermediateDirectories: false)
    guard case .present(let other) = SourceObservation.observe(dir + "/other", excludes: none) else { return }
    #expect(!other.isSameDirectory(as: empty))
    #expect(SourceObservation.observe(dir + "/cache.tmp", excludes: none) == .notDirectory)
    #expect(SourceObservation.observe(dir + "/nothing", excludes: none) == .missing(ENOENT))
  }

  @Test func theRecordSurvivesARoundTrip() throws {
    let dir = try makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    #expect(try SourceIdentity.load(stateDir: dir) == nil)
    try Self.recorded.save(stateDir: dir)
    #expect(try SourceIdentity.load(stateDir: dir) == Self.recorded)
    var st = stat()
    #expect(stat(dir + "/" + SourceIdentity.fileName, &st) == 0 && st.st_mode & 0o777 == 0o600)
  }

  @Test func aListingOfOnlyTheTopDirectoryIsEmpty() {
    let onlyDot = "drwxr-xr-x          4096 2026/11/27 20:00:00 .\n"
    #expect(!BackupProbe.listsEntries(onlyDot))
    #expect(!BackupProbe.listsEntries(""))
    let withFile = onlyDot + "-rw-r--r--             5 2026/11/27 20:00:01 a file .txt\n"
    #expect(BackupProbe.listsEntries(withFile))
  }

  func with(_ change: (inout SourceIdentity) -> Void) -> SourceIdentity {
    var id = Self.recorded
    change(&id)
    return id
  }
}
