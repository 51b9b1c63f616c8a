import FleetCore
import FleetInventory
import FleetWatch
import Foundation
import Testing

@testable import FleetProvision

/// The itemize parser on output captured from a real run of verify's rsync command (rsync 3.5.0,
/// a daemon with `fake super`) after changes on the backup: a same-size, same-mtime rewrite of
/// `with space/b c.txt` and of `new⏎line.txt` (found only by checksum), `keep` and the tree
/// `gone-dir` removed, `extra file` added, a version under `.fleetsync-versions/` (protected: not
/// listed), and `perm.txt`'s mode changed on the source.
@Suite struct VerifyItemizeTests {
  static let captured = ##"""
    @fsv *deleting   extra file
    @fsv <f+++++++++ keep
    @fsv <fc........ new\#012line.txt
    @fsv .f...p..... perm.txt
    @fsv cd+++++++++ gone-dir/
    @fsv cd+++++++++ gone-dir/sub/
    @fsv <f+++++++++ gone-dir/sub/k
    @fsv <fc........ with space/b c.txt

    Number of files: 12 (reg: 6, dir: 5, link: 1)
    Number of created files: 4 (reg: 2, dir: 2)
    Number of deleted files: 1 (reg: 1)
    Number of regular files transferred: 4
    Total file size: 34 bytes
    Total transferred file size: 16 bytes
    Literal data: 0 bytes
    Matched data: 0 bytes
    File list size: 0
    File list generation time: 0.001 seconds
    File list transfer time: 0.000 seconds
    Total bytes sent: 506
    Total bytes received: 58

    sent 506 bytes  received 58 bytes  376.00 bytes/sec
    total size is 34  speedup is 0.06 (DRY RUN)
    """##

  @Test func countsEveryKindAndKeepsThePaths() {
    let tally = VerifyItemize.tally(Self.captured)
    #expect(tally.compared == 6)
    #expect(tally.differing == 2)
    #expect(tally.differingPaths == [##"new\#012line.txt"##, "with space/b c.txt"])
    #expect(tally.missing == 4)
    #expect(tally.missingPaths == ["keep", "gone-dir", "gone-dir/sub", "gone-dir/sub/k"])
    #expect(tally.extra == 1)
    #expect(tally.extraPaths == ["extra file"])
    #expect(tally.attributes == 1)
    #expect(tally.attributePaths == ["perm.txt"])
    #expect(tally.drift)
  }

  @Test func aCleanRunHasNoDrift() {
    let clean = """
      Number of files: 1,204,311 (reg: 1,200,000, dir: 4,311)
      Number of created files: 0

      sent 506 bytes  received 58 bytes  376.00 bytes/sec
      """
    let tally = VerifyItemize.tally(clean)
    #expect(tally.compared == 1_200_000)
    #expect(!tally.drift)
  }

  @Test func keepsOnlyTheFirstPathsButCountsAll() {
    let lines = (0..<20).map { "@fsv <fc........ f\($0)" }.joined(separator: "\n")
    let tally = VerifyItemize.tally(lines)
    #expect(tally.differing == 20)
    #expect(tally.differingPaths == (0..<VerifyTally.examples).map { "f\($0)" })
  }

  @Test func linesWithoutTheMarkerAreNotItems() {
    let noise = """
      rsync: [sender] some warning about <fc........ x
      *deleting   not-an-item
      @fsv short
      """
    #expect(!VerifyItemize.tally(noise).drift)
  }

  @Test func kindsOfItemizeFlags() {
    #expect(VerifyItemize.kind("cL+++++++++") == .missing)
    #expect(VerifyItemize.kind("cLc.t......") == .differing)
    #expect(VerifyItemize.kind("<f.st......") == .differing)
    #expect(VerifyItemize.kind(".f..t......") == .attributes)
    #expect(VerifyItemize.kind(".f....og...") == .attributes)
    #expect(VerifyItemize.kind(".f.......a.") == .attributes)
    #expect(VerifyItemize.kind(".d         ") == .same)
  }
}

/// The watcher config verify reads, and the commands it runs.
@Suite struct VerifyTargetTests {
  let config = """
    # Managed by fleetsync
    source = /srv/data dir
    target = rsync://fs-data@10.0.0.2:8730/data
    password-file = /etc/fleetsync/watch/data:bk1:data.password
    state-dir = /var/lib/fleetsync/watch/data:bk1:data
    exclude = *.tmp
    exclude = /cache/
    """

  @Test func readsTheWatchersConfig() throws {
    let target = try VerifyTarget.parse(instance: "data:bk1:data", config: config)
    #expect(target.source == "/srv/data dir")
    #expect(target.target.url == "rsync://fs-data@10.0.0.2:8730/data")
    #expect(target.passwordFile == "/etc/fleetsync/watch/data:bk1:data.password")
    #expect(target.excludes == ["*.tmp", "/cache/"])
    #expect(target.keepsVersions)
  }

  @Test func aConfigWithoutTargetIsAClearError() {
    #expect(throws: FleetError.self) {
      try VerifyTarget.parse(instance: "x:b:m", config: "source = /srv\n")
    }
  }

  @Test func theCheckIsNiceReadOnlyAndProtectsVersions() throws {
    let target = try VerifyTarget.parse(instance: "data:bk1:data", config: config)
    let args = VerifyRsync.arguments(target, .check)
    #expect(
      Array(args.prefix(10)) == [
        "nice", "-n", "19", "ionice", "-c", "3", "rsync", "-c", "-aAXHS", "--numeric-ids",
      ])
    #expect(args.drop { $0 != "rsync" }.contains("-n") && args.contains("--delete"))
    #expect(args.contains("--filter=P /.fleetsync-versions/"))
    #expect(Array(args.suffix(2)) == ["--exclude=*.tmp", "--exclude=/cache/"])
    #expect(args.contains("--password-file=/etc/fleetsync/watch/data:bk1:data.password"))
    let command = try VerifyRsync.command(target, .check)
    #expect(command.hasSuffix(" '/srv/data dir/' 'rsync://fs-data@10.0.0.2:8730/data/'"))
    #expect(!command.contains("--backup"))
  }

  @Test func aRepairKeepsVersionsAndDeletesOnlyWhenAsked() throws {
    let target = try VerifyTarget.parse(instance: "data:bk1:data", config: config)
    let rsyncArguments = VerifyRsync.arguments(target, .repair(delete: false)).drop { $0 != "rsync" }
    #expect(!rsyncArguments.contains("-n"))
    #expect(!VerifyRsync.arguments(target, .repair(delete: false)).contains("--delete"))
    #expect(VerifyRsync.arguments(target, .repair(delete: true)).contains("--delete"))
    let repair = try VerifyRsync.command(target, .repair(delete: false))
    #expect(repair.contains(#"--backup "--backup-dir=.fleetsync-versions/$stamp""#))
    var mirror = target
    mirror.keepsVersions = false
    #expect(!(try VerifyRsync.command(mirror, .repair(delete: true))).contains("--backup"))
  }

  @Test func aSampleListsPicksAndComparesOnlyThePick() throws {
    let target = try VerifyTarget.parse(instance: "data:bk1:data", config: config)
    #expect(!VerifyRsync.arguments(target, .sample(percent: 5)).contains("--delete"))
    let sample = try VerifyRsync.command(target, .sample(percent: 5))
    #expect(sample.contains(#"--files-from="$list/pick" --from0"#))
    #expect(sample.contains("-v p=5.0"))
  }
}

/// The repair's source guard: never from a source that looks empty, unmounted or replaced.
@Suite struct VerifyRepairGuardTests {
  let target = VerifyTarget(
    instance: "data:bk1:data", source: "/srv/data",
    target: RsyncTarget(user: "fs-data", host: "10.0.0.2", port: 8730, module: "data"),
    passwordFile: "/p", stateDir: "/s", excludes: [], keepsVersions: true)

  /// A record as the watcher writes it (`STATE/source-identity.json`).
  func identity(inode: UInt64, empty: Bool) throws -> SourceIdentity {
    let json =
      #"{"filesystem":4660,"filesystemType":"ext4","device":2049,"inode":\#(inode),"empty":\#(empty)}"#
    return try JSONDecoder().decode(SourceIdentity.self, from: Data(json.utf8))
  }

  func tally(extra: Int) -> VerifyTally {
    var tally = VerifyTally()
    for index in 0..<extra { tally.add(.extra, "f\(index)") }
    return tally
  }

  func refusal(_ seen: VerifyRepairGuard.Observation, extra: Int = 0) -> String? {
    VerifyRepairGuard.refusal(seen, tally: tally(extra: extra), target: target, host: "nfs1")
  }

  @Test func allowsTheRecordedSourceWithData() throws {
    #expect(refusal(.init(inode: 2, hasEntries: true, recorded: try identity(inode: 2, empty: false))) == nil)
    #expect(refusal(.init(inode: 2, hasEntries: true, recorded: nil), extra: 3) == nil)
  }

  @Test func refusesAMissingSource() throws {
    let why = try #require(refusal(.init(inode: nil, hasEntries: false, recorded: nil)))
    #expect(why.contains("/srv/data does not exist"))
  }

  @Test func refusesAnotherDirectoryThanTheRecordedOne() throws {
    let why = try #require(
      refusal(.init(inode: 131, hasEntries: true, recorded: try identity(inode: 2, empty: false))))
    #expect(why.contains("not the directory the watcher recorded"))
    #expect(why.contains("fleetsync resume -i INVENTORY --accept-source --limit nfs1 --directory data"))
  }

  @Test func refusesAnEmptySourceThatHeldData() throws {
    let why = try #require(
      refusal(.init(inode: 2, hasEntries: false, recorded: try identity(inode: 2, empty: false))))
    #expect(why.contains("is empty but the watcher recorded it holding data"))
  }

  @Test func refusesAnEmptySourceWhileTheBackupHasFiles() throws {
    let why = try #require(refusal(.init(inode: 2, hasEntries: false, recorded: nil), extra: 200))
    #expect(why.contains("empty while the backup holds 200 entries"))
    #expect(refusal(.init(inode: 2, hasEntries: false, recorded: try identity(inode: 2, empty: true))) == nil)
  }
}

/// Which watchers `fleetsync verify` checks: `--limit HOST`, `--limit HOST:PATH` (path or name).
@Suite struct VerifySelectionTests {
  @Test func limitsPickHostsAndDirectoriesAndUnknownOnesAreRefused() throws {
    let fleet = try FakeFleet()
    var request = VerifyRequest()
    let all = try fleet.provisioner().verifyTargets(request)
    #expect(all.map(\.ref.name) == ["nfs1", "nfs2"])
    #expect(all.flatMap(\.instances) == ["home:bk1:home", "proj:bk1:proj"])

    request.directories = ["nfs2": ["/srv/nfs/proj/"]]
    let one = try fleet.provisioner(limit: ["nfs2"]).verifyTargets(request)
    #expect(one.map(\.ref.name) == ["nfs2"] && one[0].instances == ["proj:bk1:proj"])
    request.directories = ["nfs1": ["home"]]
    #expect(try fleet.provisioner(limit: ["nfs1"]).verifyTargets(request)[0].instances == ["home:bk1:home"])

    request.directories = ["nfs1": ["/srv/nfs/hom"]]
    #expect {
      try fleet.provisioner(limit: ["nfs1"]).verifyTargets(request)
    } throws: { error in
      let fleetError = error as? FleetError
      return fleetError?.code.meaning == .invalidInput
        && fleetError?.message.contains("/srv/nfs/home") == true
    }
  }

  @Test func aRepairFromASampleIsRefusedBeforeAnything() async throws {
    let fleet = try FakeFleet()
    var request = VerifyRequest()
    request.repair = true
    request.samplePercent = 5
    await #expect(throws: FleetError.self) { try await fleet.provisioner().verify(request) }
    #expect(fleet.hosts.values.allSatisfy { $0.state.steps.isEmpty })
  }
}
