import FleetCore
import FleetWire
import Foundation
import Logging
import Testing

@testable import FleetWatch

#if canImport(Glibc)
  import Glibc
#endif

/// The mass-change alarm's pure parts: its setting, the detector on a fake clock, the counts read
/// from real rsync `--stats` output, and the alarm kept in the state directory across a restart.
@Suite struct MassChangeTests {
  private let minute: UInt64 = 60_000_000_000
  private let limit = MassChangeLimit.default

  @Test func theSettingParsesAndRefusesClearly() throws {
    #expect(try MassChangeLimit.parse("500,10x,5m") == .default)
    #expect(try MassChangeLimit.parse("off").isOff)
    #expect(
      try MassChangeLimit.parse("20,3x,90s") == MassChangeLimit(minFiles: 20, factor: 3, windowSeconds: 90))
    #expect(MassChangeLimit(minFiles: 20, factor: 3, windowSeconds: 3_600).description == "20,3x,1h")
    for bad in ["", "500", "500,10,5m", "0,10x,5m", "500,10x,5", "500,10x,5s", "500,10x,2d", "none"] {
      #expect(throws: FleetError.self, "\(bad)") { try MassChangeLimit.parse(bad) }
    }
    do {
      _ = try MassChangeLimit.parse("500,ten,5m")
    } catch let error as FleetError {
      #expect(error.message.contains("500,10x,5m"))
    }
  }

  @Test func aQuietDirectoryAlarmsAtTheMinimum() {
    var d = MassChangeDetector(limit: limit)
    let t = 100 * minute
    d.record(300, now: t)
    d.record(199, now: t + 2 * minute)
    #expect(d.check(now: t + 2 * minute) == nil)
    d.record(1, now: t + 3 * minute)
    #expect(d.check(now: t + 3 * minute) == .init(count: 500, threshold: 500, normal: 0))
  }

  @Test func changesOutsideTheWindowDoNotAddUp() {
    var d = MassChangeDetector(limit: limit)
    let t = 100 * minute
    // 400 files every 6 minutes: never 500 within 5.
    for i in 0..<10 {
      d.record(400, now: t + UInt64(i) * 6 * minute)
      #expect(d.check(now: t + UInt64(i) * 6 * minute) == nil, "round \(i)")
    }
  }

  @Test func aBusyDirectoryNeedsTenTimesItsNormalRate() {
    var d = MassChangeDetector(limit: limit)
    let t = 100 * minute
    // An hour of 200 changes per 5 minutes: normal is 200, the threshold 2000.
    for i in 0..<60 { d.record(40, now: t + UInt64(i) * minute) }
    let now = t + 60 * minute
    #expect(d.normal(now: now) == 200)
    #expect(d.threshold(now: now) == 2_000)
    // The window already holds the last four minutes' 160.
    d.record(1_800, now: now)
    #expect(d.check(now: now) == nil)
    d.record(40, now: now)
    #expect(d.check(now: now) == .init(count: 2_000, threshold: 2_000, normal: 200))
  }

  @Test func oneEarlierBurstDoesNotRaiseTheBar() {
    var d = MassChangeDetector(limit: limit)
    let t = 100 * minute
    d.record(100_000, now: t)
    let later = t + 30 * minute
    #expect(d.normal(now: later) == 0)
    d.record(500, now: later)
    #expect(d.check(now: later)?.threshold == 500)
  }

  @Test func clearingForgetsTheCurrentWindowOnly() {
    var d = MassChangeDetector(limit: limit)
    let t = 100 * minute
    d.record(7, now: t - 10 * minute)
    d.record(600, now: t)
    #expect(d.check(now: t) != nil)
    d.absorb(now: t)
    #expect(d.check(now: t) == nil)
    #expect(d.windowCount(now: t) == 0)
    #expect(d.windowCount(now: t - 10 * minute) == 7)
  }

  @Test func offNeverAlarms() {
    var d = MassChangeDetector(limit: .off)
    d.record(1_000_000, now: minute)
    #expect(d.check(now: minute) == nil)
  }

  /// Runs the real rsync locally with `--stats`, as transfers do.
  private func rsync(_ arguments: [String]) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/rsync")
    p.arguments = ["-a", "--stats", "--no-human-readable"] + arguments
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = FileHandle.nullDevice
    try p.run()
    let out = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return String(decoding: out, as: UTF8.self)
  }

  private func write(_ path: String, _ text: String) throws {
    try text.write(toFile: path, atomically: false, encoding: .utf8)
  }

  @Test func statsCountDeletesAndOverwritesOfRealRsyncRuns() throws {
    let dir = try makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let src = dir + "/src"
    let dst = dir + "/dst/"
    try FileManager.default.createDirectory(atPath: src + "/sub", withIntermediateDirectories: true)
    for i in 1...4 { try write("\(src)/f\(i)", "v1 \(i)") }
    try write(src + "/sub/g", "g")
    let first = MassChangeStats(stats: try rsync([src + "/", dst]))
    #expect(first == MassChangeStats(deleted: 0, overwritten: 0))

    try write(src + "/f1", "v2 longer")
    try write(src + "/f2", "v2 longer too")
    try write(src + "/new", "n")
    unlink(src + "/f3")
    try FileManager.default.removeItem(atPath: src + "/sub")
    // Deletes counted, not applied (--max-delete=0): the overwrites count, no delete does.
    let counted = MassChangeStats(stats: try rsync(["--delete", "--max-delete=0", src + "/", dst]))
    #expect(counted == MassChangeStats(deleted: 0, overwritten: 2))
    // f3, sub/g and sub itself.
    let applied = MassChangeStats(stats: try rsync(["--delete", src + "/", dst]))
    #expect(applied == MassChangeStats(deleted: 3, overwritten: 0))
  }

  private func gate(_ stateDir: String, _ setting: String = "10,10x,5m") throws -> MassChangeGate {
    var config = WatchConfig(
      source: "/nonexistent", target: RsyncTarget(user: "u", host: "127.0.0.1", port: 1, module: "m"),
      stateDir: stateDir)
    config.massChange = try MassChangeLimit.parse(setting)
    config.connectTimeout = .seconds(1)
    return MassChangeGate(config: config, logger: Logger(label: "test"))
  }

  private func status(_ gate: MassChangeGate) -> WatchStatus {
    var status = WatchStatus()
    gate.fill(&status)
    return status
  }

  private let tenDeleted = "Number of deleted files: 10 (reg: 10)\nNumber of regular files transferred: 0\n"

  @Test func theAlarmSurvivesARestartAndAnOperatorClearsIt() async throws {
    let dir = try makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let first = try gate(dir)
    first.note("Number of deleted files: 9 (reg: 9)\n")
    #expect(status(first).massChangeAlarm == nil)
    #expect(status(first).massChangeRecent == 9)
    first.note(tenDeleted, overwrites: false)
    let alarm = try #require(status(first).massChangeAlarm)
    #expect(alarm.count == 19 && alarm.threshold == 10 && !alarm.pruneHeld)

    // A restart (a new gate on the same state directory) keeps it.
    let second = try gate(dir)
    #expect(status(second).massChangeAlarm == alarm)
    var mode = stat()
    #expect(stat(dir + "/" + MassChangeRecord.fileName, &mode) == 0 && mode.st_mode & 0o777 == 0o600)

    // The daemon cannot be reached: the marker is not on the backup, the alarm stands.
    let command = RsyncCommand(
      config: WatchConfig(
        source: "/nonexistent", target: RsyncTarget(user: "u", host: "127.0.0.1", port: 1, module: "m"),
        stateDir: dir))
    await second.tick(command)?()
    #expect(status(second).massChangeAlarm?.pruneHeld == false)

    try Data("asked\n".utf8).write(to: URL(fileURLWithPath: second.requestPath))
    await second.tick(command)?()
    #expect(status(second).massChangeAlarm == nil)
    #expect(access(second.requestPath, F_OK) != 0)
    #expect(status(second).massChangeRecent == 0)
    #expect(status(try gate(dir)).massChangeAlarm == nil)
  }

  @Test func anUnreadableRecordKeepsPruningHeld() throws {
    let dir = try makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try Data("{not json".utf8).write(to: URL(fileURLWithPath: dir + "/" + MassChangeRecord.fileName))
    let alarm = try #require(status(try gate(dir)).massChangeAlarm)
    #expect(alarm.summary.contains("its record could not be read"))
  }

  /// Turning the alarm off raises none, but one that stands stays until an operator clears it.
  @Test func offKeepsAStandingAlarmUntilCleared() async throws {
    let dir = try makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try gate(dir).note(tenDeleted)
    let off = try gate(dir, "off")
    #expect(status(off).massChangeAlarm != nil)
    #expect(status(off).massChangeRecent == nil)
    try Data("asked\n".utf8).write(to: URL(fileURLWithPath: off.requestPath))
    _ = off.tick(
      RsyncCommand(
        config: WatchConfig(
          source: "/x", target: RsyncTarget(user: "u", host: "127.0.0.1", port: 1, module: "m"), stateDir: dir
        )))
    #expect(status(off).massChangeAlarm == nil)
    off.note(tenDeleted)
    off.note(tenDeleted)
    #expect(status(off).massChangeAlarm == nil)
  }

  @Test func theMarkerCommandsTouchOnlyTheHold() {
    var config = WatchConfig(
      source: "/srv/a", target: RsyncTarget(user: "u", host: "b", port: 873, module: "m", subdir: "x"),
      stateDir: "/var/lib/fleetsync/watch/home:bk1:m")
    config.passwordFile = "/etc/pw"
    let marker = MassChangeMarker(config: config)
    #expect(marker.name == ".hold-home:bk1:m")
    #expect(marker.destination == "rsync://u@b:873/m/.fleetsync-versions/")
    let remove = marker.removeArguments(RsyncCommand(config: config), empty: "/e")
    #expect(
      Array(remove.suffix(4)) == ["--include=/.hold-home:bk1:m", "--exclude=*", "/e/", marker.destination])
    #expect(remove.contains("--password-file=/etc/pw"))
    #expect(MassChangeMarker.literal("a*b[c") == "a\\*b\\[c")
    #expect(MassChangeMarker.literal("plain\\name") == "plain\\name")
  }
}
