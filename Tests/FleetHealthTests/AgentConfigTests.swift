import FleetAgent
import FleetCore
import FleetWatch
import FleetWire
import Foundation
import Testing

@Suite("Agent config file and quick form")
struct AgentConfigTests {
  @Test func validFileSetsEveryKey() throws {
    let text = """
      # replicate /srv/data to backup1
      source = /srv/data/
      target = rsync://backup@backup1:8873/data/host1
      password-file = /etc/fleetsync/watch/data.password
      state-dir = /var/lib/fleetsync/watch/data

      health-address = 127.0.0.1
      health-port = 9100
      exclude = *.tmp
      exclude = .cache/
      batch-delay = 250
      workers = 8
      rsync-path = /usr/bin/rsync
      io-timeout = 2m
      connect-timeout = 5
      full-sync-interval = 1h
      retry-max = 60
      backend = inotify
      """
    let settings = try AgentSettings.parse(text, file: "data.conf")
    let watch = settings.watch
    #expect(watch.source == "/srv/data")
    #expect(watch.target.host == "backup1")
    #expect(watch.target.port == 8873)
    #expect(watch.target.module == "data")
    #expect(watch.passwordFile == "/etc/fleetsync/watch/data.password")
    #expect(watch.stateDir == "/var/lib/fleetsync/watch/data")
    #expect(watch.excludes == ["*.tmp", ".cache/"])
    #expect(watch.batchDelay == .milliseconds(250))
    #expect(watch.workers == 8)
    #expect(watch.rsyncPath == "/usr/bin/rsync")
    #expect(watch.ioTimeout == .seconds(120))
    #expect(watch.connectTimeout == .seconds(5))
    #expect(watch.fullSyncInterval == .seconds(3600))
    #expect(watch.retryMax == .seconds(60))
    #expect(watch.backend == .inotify)
    #expect(settings.healthAddress == "127.0.0.1")
    #expect(settings.healthPort == 9100)
  }

  @Test func defaultsApplyWhenOnlyRequiredKeysAreGiven() throws {
    let settings = try AgentSettings.parse(
      "source = /srv/data\ntarget = rsync://backup1/data\n", file: "min.conf")
    #expect(settings.healthPort == nil)
    #expect(settings.watch.stateDir == AgentSettings.defaultStateDir(forSource: "/srv/data"))
    #expect(settings.watch.stateDir.hasPrefix("/var/lib/fleetsync/watch/"))
    #expect(
      AgentSettings.defaultStateDir(forSource: "/srv/a") != AgentSettings.defaultStateDir(forSource: "/srv/b")
    )
  }

  /// A line that is not `key = value` is named by its number, never repeated: it may be a secret.
  @Test func aLineWithoutEqualsSignIsNotEchoed() {
    let secret = "hunter2-pasted-password"
    let text = "source = /srv/data\ntarget = rsync://u@h/m\n\(secret)\n"
    #expect {
      try AgentSettings.parse(text, file: "w.conf")
    } throws: { error in
      let message = String(describing: error)
      return message.contains("w.conf:3: expected `key = value`") && !message.contains(secret)
    }
  }

  /// One bad line of each kind, each with the line number it is on.
  @Test(arguments: [
    ("sourse = /srv/data", "unknown key \"sourse\""),
    ("this line has no equals sign", "expected `key = value`"),
    ("workers = many", "workers must be a number from 1 to 64"),
    ("workers = 0", "workers must be a number from 1 to 64"),
    ("health-port = 70000", "health-port must be a number"),
    ("batch-delay = soon", "batch-delay must be milliseconds"),
    ("io-timeout = 0", "io-timeout must be seconds"),
    ("full-sync-interval = 31d", "full-sync-interval must be seconds from 0 (off) to 2592000"),
    ("state-dir = relative/dir", "state-dir must be an absolute path"),
    ("password-file =", "password-file has no value"),
    ("source = /srv/other", "source is already set on line 1"),
    ("backend = fanotfy", "backend must be auto, fanotify or inotify, not \"fanotfy\""),
  ])
  func badLineIsReportedWithItsLine(line: String, message: String) {
    let text = "source = /srv/data\ntarget = rsync://backup1/data\n# comment\n\(line)\n"
    let error = #expect(throws: FleetError.self) { try AgentSettings.parse(text, file: "/etc/w.conf") }
    #expect(error?.code == .agentConfig)
    #expect(error?.message.contains("/etc/w.conf:4: \(message)") == true, "got: \(error?.message ?? "")")
  }

  /// A file written on Windows (or by a tool that writes CRLF) reads as the same lines.
  @Test func crlfLineEndingsAreLineEndings() throws {
    let text =
      "# from an editor that writes CRLF\r\nsource = /srv/data\r\ntarget = rsync://backup1/data\r\nworkers = 3\r\n"
    let settings = try AgentSettings.parse(text, file: "w.conf")
    #expect(settings.watch.source == "/srv/data")
    #expect(settings.watch.target.module == "data")
    #expect(settings.watch.workers == 3)

    let error = #expect(throws: FleetError.self) {
      try AgentSettings.parse("source = /srv/data\r\nworkers = lots\r\n", file: "w.conf")
    }
    #expect(
      error?.message.contains("w.conf:2: workers must be a number") == true, "got: \(error?.message ?? "")")
  }

  @Test func badTargetNamesTheExpectedForm() {
    let error = #expect(throws: FleetError.self) {
      try AgentSettings.parse("source = /srv/data\ntarget = http://backup1/data\n", file: "t.conf")
    }
    #expect(error?.message.contains("t.conf:2: bad target \"http://backup1/data\"") == true)
    #expect(error?.message.contains("rsync://USER@HOST[:PORT]/MODULE[/SUBDIR]") == true)
  }

  @Test func everyProblemIsReportedAtOnce() {
    let text = """
      colour = blue
      workers = -1
      health-port = port
      """
    let error = #expect(throws: FleetError.self) { try AgentSettings.parse(text, file: "w.conf") }
    let lines = error?.message.split(separator: "\n").map(String.init) ?? []
    #expect(lines.count == 5, "got: \(lines)")
    #expect(lines.contains { $0.hasPrefix("w.conf:1: unknown key \"colour\"") })
    #expect(lines.contains { $0.hasPrefix("w.conf:2: workers must be") })
    #expect(lines.contains { $0.hasPrefix("w.conf:3: health-port must be") })
    #expect(
      lines.contains { $0.hasPrefix("w.conf:3: missing required key \"source\"; add a line `source = ") })
    #expect(lines.contains { $0.hasPrefix("w.conf:3: missing required key \"target\"") })
  }

  @Test func unknownKeySuggestsTheRightOne() {
    let error = #expect(throws: FleetError.self) {
      try AgentSettings.parse("source = /a\ntarget = rsync://h/m\nbatch_delay = 5\n", file: "w.conf")
    }
    #expect(error?.message.contains("did you mean `batch-delay`?") == true)
  }

  @Test func quickFormUsesTheSameChecks() throws {
    let options = try AgentOptions.parse([
      "--source", "/srv/data", "--target=rsync://backup@127.0.0.1:8873/data", "--exclude", "*.swp",
      "--health-port", "9100", "--batch-delay", "50",
    ])
    let settings = try AgentSettings.fromOptions(options)
    #expect(settings.watch.excludes == ["*.swp"])
    #expect(settings.watch.batchDelay == .milliseconds(50))
    #expect(settings.healthPort == 9100)

    let bad = try AgentOptions.parse(["--workers", "lots"])
    let error = #expect(throws: FleetError.self) { try AgentSettings.fromOptions(bad) }
    #expect(error?.message.contains("missing --source") == true)
    #expect(error?.message.contains("missing --target") == true)
    #expect(error?.message.contains("--workers: workers must be a number") == true)
  }

  @Test func quickFormFlagsAreTheConfigKeysThatHaveOne() throws {
    let options = try AgentOptions.parse([
      "--source", "/a", "--target", "rsync://h/m", "--password-file=/p", "--state-dir", "/s",
      "--health-address", "::1", "--health-port", "1", "--exclude", "x", "--exclude=-y", "--batch-delay", "0",
      "--workers", "2", "--rsync-path", "rsync",
    ])
    #expect(
      options.values.map(\.key.name) == [
        "source", "target", "password-file", "state-dir", "health-address", "health-port", "exclude",
        "exclude",
        "batch-delay", "workers", "rsync-path",
      ])
    #expect(options.values.filter { $0.key == .exclude }.map(\.value) == ["x", "-y"])
    #expect(WatcherConfigKey.allCases.compactMap(\.flag).count == 14)
  }

  /// Bad command lines: every problem at once, each saying what to write.
  @Test(arguments: [
    (["--sourse", "/srv/data"], "unknown option --sourse; did you mean `--source`?"),
    (
      ["--io-timeout", "5"],
      "--io-timeout is not a command-line option; set `io-timeout = 30` in a config file"
    ),
    (["--workers"], "--workers needs a value, e.g. --workers 4"),
    (["--target", "--source", "/a"], "--target needs a value"),
    (["--source", "/a", "--source", "/b"], "--source is given twice"),
    (["stray"], "unexpected argument \"stray\""),
  ])
  func badQuickFormIsRefused(arguments: [String], message: String) {
    let error = #expect(throws: FleetError.self) { try AgentOptions.parse(arguments) }
    #expect(error?.code == .agentConfig)
    #expect(error?.message.split(separator: "\n").count == 1, "got: \(error?.message ?? "")")
    #expect(error?.message.contains(message) == true, "got: \(error?.message ?? "")")
  }
}

@Suite("Agent quick form and secrets")
struct AgentQuickFormSecretTests {
  /// A password given to an option that does not exist is not repeated in the error.
  @Test func theValueOfAnUnknownOptionIsNotEchoed() {
    let error = #expect(throws: FleetError.self) {
      try AgentOptions.parse(["--source", "/a", "--password", "hunter2", "--rsync-password=hunter3"])
    }
    #expect(error?.message.contains("unknown option --password") == true, "got: \(error?.message ?? "")")
    #expect(error?.message.contains("unknown option --rsync-password") == true)
    #expect(error?.message.contains("hunter") == false, "got: \(error?.message ?? "")")
  }
}

@Suite("Agent config file on disk")
struct AgentConfigFileTests {
  @Test func loadReadsAFileAndNamesItInErrors() throws {
    let path = NSTemporaryDirectory() + "/fleetsync-agent-\(UInt32.random(in: 0...UInt32.max)).conf"
    defer { try? FileManager.default.removeItem(atPath: path) }
    try "source = /srv/data\ntarget = rsync://backup1/data\nworkers = 3\n".write(
      toFile: path, atomically: true, encoding: .utf8)
    #expect(try AgentSettings.load(file: path).watch.workers == 3)

    try "source = /srv/data\nworkers = 3\n".write(toFile: path, atomically: true, encoding: .utf8)
    let error = #expect(throws: FleetError.self) { try AgentSettings.load(file: path) }
    #expect(
      error?.message
        == "\(path):2: missing required key \"target\"; add a line `target = rsync://backup@backup1:873/data`"
    )

    let missing = #expect(throws: FleetError.self) { try AgentSettings.load(file: path + ".none") }
    #expect(missing?.message.contains("\(path).none: the config file does not exist") == true)
  }
}

@Suite("Agent config as the controller writes it")
struct AgentConfigFromControllerTests {
  /// The shape `FleetProvision` renders for a watcher instance (header comment, IPv6 host in brackets).
  @Test func controllerRenderedConfigParses() throws {
    let text = """
      # Managed by fleetsync: edits are overwritten by `fleetsync up` and removed by `fleetsync down`.
      # web1:/srv/www -> backup1/www
      source = /srv/www
      target = rsync://fs-www@[fd00::2]:8873/www
      password-file = /etc/fleetsync/watch/www:backup1:www.password
      state-dir = /var/lib/fleetsync/watch/www:backup1:www
      health-address = 127.0.0.1
      health-port = 9101
      batch-delay = 100
      workers = 4
      full-sync-interval = 0
      exclude = *.swp

      """
    let settings = try AgentSettings.parse(text, file: "/etc/fleetsync/watch/www:backup1:www.conf")
    #expect(settings.watch.target.host == "fd00::2")
    #expect(settings.watch.target.port == 8873)
    #expect(settings.watch.target.user == "fs-www")
    #expect(settings.watch.stateDir == "/var/lib/fleetsync/watch/www:backup1:www")
    #expect(settings.watch.fullSyncInterval == nil)
    #expect(settings.healthPort == 9101)
    #expect(settings.watch.excludes == ["*.swp"])
  }
}
