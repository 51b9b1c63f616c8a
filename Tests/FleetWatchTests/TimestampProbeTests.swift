import FleetCore
import Foundation
import Testing

@testable import FleetWatch

#if canImport(Glibc)
  import Glibc
#endif

/// The probe that finds the precision a full sync compares mtimes at: its reading of rsync's itemized
/// output, its decision, its sample, and the arguments each kind of run gets.
@Suite("Full-sync timestamp precision")
struct TimestampProbeTests {
  private func command(source: String = "/src", stateDir: String = "/state") -> RsyncCommand {
    var config = WatchConfig(
      source: source, target: RsyncTarget(user: "u", host: "h", module: "data"), stateDir: stateDir)
    config.passwordFile = "/etc/pw"
    config.excludes = ["*.tmp"]
    return RsyncCommand(config: config)
  }

  @Test func itemizedLinesAreCountedByWhatDiffers() {
    let output = """
      <f..t...... a
      <f..t.og... b with spaces
      .f          c
      .f....og... d
      <f+++++++++ new
      <f.st...... grown
      .d          dir/
      cd+++++++++ newdir/
      hf          link => a
      <f..T...... e
      *deleting   gone
      """
    #expect(TimestampProbe.tally(output) == .init(equal: 2, timeOnly: 3, other: 2))
    #expect(TimestampProbe.tally("") == .init())
  }

  /// Decides with fake dry runs giving `tallies` (nil: the run failed); also says which were asked.
  private func decide(_ tallies: [TimestampPrecision: TimestampProbe.Tally]) async -> (
    precision: TimestampPrecision, reason: String, asked: [TimestampPrecision]
  ) {
    var asked: [TimestampPrecision] = []
    let verdict = await TimestampProbe.decide { precision in
      asked.append(precision)
      return tallies[precision]
    }
    return (verdict.precision, verdict.reason, asked)
  }

  @Test func aBackupThatKeepsNanosecondsIsComparedToTheNanosecond() async {
    let verdict = await decide([.nanosecond: .init(equal: 1, timeOnly: 40, other: 3)])
    #expect(verdict.precision == .nanosecond)
    #expect(verdict.asked == [.nanosecond], "one equal file is enough: no coarser run")
  }

  @Test func withoutEvidenceOrWhenARunFailsTheFullSyncStaysAtNanoseconds() async {
    // Nothing of the sample on the backup yet (a first full sync): no evidence.
    #expect(await decide([.nanosecond: .init(other: 64)]).precision == .nanosecond)
    // The first, second or third run failed.
    #expect(await decide([:]).precision == .nanosecond)
    #expect(await decide([.nanosecond: .init(timeOnly: 5)]).precision == .nanosecond)
    #expect(
      await decide([.nanosecond: .init(timeOnly: 5), .second: .init(equal: 2)]).precision == .nanosecond)
  }

  @Test func aBackupThatLostSubSecondTimesIsComparedToTheSecond() async {
    let verdict = await decide([
      .nanosecond: .init(timeOnly: 60, other: 4), .second: .init(equal: 60, other: 4),
    ])
    #expect(verdict.precision == .second)
    #expect(verdict.asked == [.nanosecond, .second])
    #expect(verdict.reason.contains("60"))
  }

  @Test func changedFilesInTheSampleDoNotMakeItCoarser() async {
    // 50 lost their sub-second part; 10 changed hours ago: to the second, not two seconds.
    let mixed = await decide([
      .nanosecond: .init(timeOnly: 60), .second: .init(equal: 50, timeOnly: 10),
      .twoSeconds: .init(equal: 50, timeOnly: 10),
    ])
    #expect(mixed.precision == .second)
    // Every time-only difference is a change: nanoseconds.
    let changed = await decide([
      .nanosecond: .init(timeOnly: 60), .second: .init(timeOnly: 60), .twoSeconds: .init(timeOnly: 60),
    ])
    #expect(changed.precision == .nanosecond)
  }

  @Test func aBackupWithTwoSecondTimesIsComparedWithinOneSecond() async {
    // FAT: about half the files are an odd second behind.
    let verdict = await decide([
      .nanosecond: .init(timeOnly: 64), .second: .init(equal: 30, timeOnly: 34),
      .twoSeconds: .init(equal: 64),
    ])
    #expect(verdict.precision == .twoSeconds)
    #expect(verdict.asked == [.nanosecond, .second, .twoSeconds])
  }

  @Test func onlyFullSyncsCompareCoarser() {
    var cmd = command()
    cmd.fullSyncPrecision = .second
    #expect(cmd.fullArguments.contains("--modify-window=0"))
    #expect(!cmd.fullArguments.contains("--modify-window=-1"))
    cmd.fullSyncPrecision = .twoSeconds
    #expect(cmd.fullArguments.contains("--modify-window=1"))
    for args in [cmd.listArguments("/l"), cmd.treeArguments("/l"), cmd.rootArguments, cmd.commonArguments] {
      #expect(args.contains("--modify-window=-1"))
      #expect(args.filter { $0.hasPrefix("--modify-window") }.count == 1)
    }
    #expect(cmd.listArguments("/l").contains("--ignore-times"))
    #expect(cmd.treeArguments("/l").contains("--ignore-times"))
    #expect(command().fullArguments.contains("--modify-window=-1"))
  }

  @Test func theProbeIsADryRunThatItemizesEveryListedFile() {
    let args = TimestampProbe(command: command()).arguments(list: "/state/p", at: .second)
    #expect(args.contains("--dry-run"))
    #expect(args.filter { $0 == "--itemize-changes" }.count == 2)
    #expect(args.contains("--modify-window=0"))
    #expect(args.contains("--files-from=/state/p") && args.contains("--from0"))
    #expect(args.contains("--password-file=/etc/pw") && args.contains("--exclude=*.tmp"))
    #expect(!args.contains { $0.hasPrefix("--delete") || $0.hasPrefix("--backup") || $0 == "--ignore-times" })
    #expect(args.suffix(2) == ["/src/", "rsync://u@h/data/"])
  }

  @Test func theSampleTakesOldFilesWithSubSecondTimesAndStopsAtItsBounds() throws {
    let dir = try makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let old = timespec(tv_sec: time(nil) - 3600, tv_nsec: 123_456_789)
    func make(_ name: String, _ time: timespec?) throws {
      let path = dir + "/" + name
      try FileManager.default.createDirectory(
        atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
      #expect(FileManager.default.createFile(atPath: path, contents: Data("x".utf8)))
      if let time {
        let times = [time, time]
        #expect(utimensat(AT_FDCWD, path, times, 0) == 0)
      }
    }
    try make("a", old)
    try make("sub/b", old)
    try make("whole", timespec(tv_sec: old.tv_sec, tv_nsec: 0))
    try make("fresh", nil)
    try make("skip.tmp", old)
    try make("linked", old)
    #expect(link(dir + "/linked", dir + "/linked2") == 0)
    var probe = TimestampProbe(command: command(source: dir, stateDir: dir))
    #expect(Set(probe.sample().map(\.description)) == ["a", "sub/b"])
    probe.sampleSize = 1
    #expect(probe.sample().map(\.description) == ["a"], "breadth-first: the top first")
    probe.sampleSize = 64
    probe.entryLimit = 1
    #expect(probe.sample().count <= 1)
  }
}
