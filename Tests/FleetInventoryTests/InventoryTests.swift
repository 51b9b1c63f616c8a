import FleetCore
import FleetInventory
import FleetWire
import Foundation
import Testing

/// The package root, found from this file's path.
private let packageRoot: String = {
  var url = URL(fileURLWithPath: #filePath)
  while url.path != "/" {
    url.deleteLastPathComponent()
    if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
      return url.path
    }
  }
  return "."
}()

private func issues(_ yaml: String) -> [InventoryIssue] {
  do {
    _ = try Inventory.parse(yaml: yaml, file: "inv.yaml")
    return []
  } catch let error as FleetError {
    return (error.cause as? InventoryIssues)?.issues ?? []
  } catch {
    return []
  }
}

/// A valid base inventory; malformed cases are edits of it.
private let base = """
  backups:
    bk1:
      address: 10.0.0.21
      daemons:
        main:
          modules:
            home: /srv/backup/home
  sources:
    nfs1:
      address: 10.0.0.11
      directories:
        home:
          path: /srv/nfs/home
          to: [bk1/home]
  """

@Suite struct InventoryTests {
  @Test func examplesInTheRepositoryAreValid() throws {
    for name in ["small.yaml", "large.yaml"] {
      let inventory = try Inventory.load(path: "\(packageRoot)/inventory/\(name)")
      #expect(!inventory.sources.isEmpty)
      #expect(!inventory.backups.isEmpty)
    }
  }

  @Test func overridesApplyDefaultsThenGroupsThenHostThenDirectory() throws {
    let inventory = try Inventory.load(path: "\(packageRoot)/inventory/large.yaml")
    let nfs1 = try #require(inventory.sources.first { $0.name == "nfs1" })
    #expect(nfs1.ssh.port == 2222)  // group east
    #expect(nfs1.ssh.user == "root")  // defaults
    let home = try #require(nfs1.directories.first { $0.name == "home" })
    #expect(home.watch.workers == 8)  // group busy
    #expect(home.watch.batchDelayMs == 50)  // group busy
    #expect(home.watch.excludes == [".nfs*", "*.swp"])  // defaults
    #expect(home.destinations.count == 2)  // fan-out
    #expect(home.healthPort == 9710)
    let nfs2 = try #require(inventory.sources.first { $0.name == "nfs2" })
    #expect(nfs2.inotify.maxUserWatches == 4_194_304)  // host over defaults
    #expect(nfs2.inotify.maxQueuedEvents == 131_072)  // defaults
    let projects = try #require(nfs2.directories.first { $0.name == "projects" })
    #expect(projects.watch.workers == 6)  // directory over everything
    let dr = try #require(inventory.backup(named: "bk-dr"))
    #expect(dr.ssh.user == "backup-admin")
    #expect(dr.ssh.hostKeyPolicy == "accept-new")
    #expect(inventory.senders(backup: "bk-east", module: "nfs2-home") == ["10.20.0.12"])
    #expect(inventory.secretsFile.hasSuffix("inventory/large.secrets"))
  }

  @Test func baseIsValid() throws {
    let inventory = try Inventory.parse(yaml: base, file: "inv.yaml")
    #expect(inventory.sources[0].directories[0].path == "/srv/nfs/home")
    #expect(inventory.secretsFile == "inv.secrets")
  }

  /// Malformed inventories: each must fail with an issue whose message contains `expect`, at `line`.
  struct Case: Sendable, CustomTestStringConvertible {
    var name: String
    var yaml: String
    var expect: String
    var line: Int
    var testDescription: String { name }
  }

  static let malformed: [Case] = [
    Case(name: "YAML syntax", yaml: "sources:\n  nfs1: [unclosed\n", expect: "YAML syntax", line: 3),
    Case(name: "tab indentation", yaml: "sources:\n\tnfs1: {}\n", expect: "YAML syntax", line: 2),
    Case(name: "empty file", yaml: "", expect: "empty", line: 0),
    Case(name: "top level is a list", yaml: "- a\n- b\n", expect: "must be a mapping", line: 1),
    Case(
      name: "unknown top key", yaml: base + "\nbackup_hosts: {}\n", expect: "unknown key `backup_hosts`",
      line: 15),
    Case(
      name: "misspelled key",
      yaml: base.replacingOccurrences(of: "address: 10.0.0.11", with: "adress: 10.0.0.11"),
      expect: "unknown key `adress`", line: 10),
    Case(
      name: "port is a string",
      yaml: base.replacingOccurrences(of: "    main:\n", with: "    main:\n        port: eighty\n"),
      expect: "must be a whole number", line: 6),
    Case(
      name: "port out of range",
      yaml: base.replacingOccurrences(of: "    main:\n", with: "    main:\n        port: 70000\n"),
      expect: "out of range", line: 6),
    Case(
      name: "path is a number", yaml: base.replacingOccurrences(of: "path: /srv/nfs/home", with: "path: 42"),
      expect: "must be a string", line: 13),
    Case(
      name: "relative path",
      yaml: base.replacingOccurrences(of: "path: /srv/nfs/home", with: "path: srv/nfs/home"),
      expect: "is relative", line: 13),
    Case(
      name: "dot-dot in path",
      yaml: base.replacingOccurrences(of: "path: /srv/nfs/home", with: "path: /srv/../etc"),
      expect: "`..`", line: 13),
    Case(
      name: "command substitution in path",
      yaml: base.replacingOccurrences(of: "path: /srv/nfs/home", with: "path: \"/srv/$(reboot)\""),
      expect: "does not accept", line: 13),
    Case(
      name: "semicolon in path",
      yaml: base.replacingOccurrences(of: "path: /srv/nfs/home", with: "path: \"/srv/a; rm -rf /\""),
      expect: "does not accept", line: 13),
    Case(
      name: "newline in path",
      yaml: base.replacingOccurrences(of: "path: /srv/nfs/home", with: "path: \"/srv/a\\nb\""),
      expect: "does not accept", line: 13),
    Case(
      name: "path ends with a blank",
      yaml: base.replacingOccurrences(of: "path: /srv/nfs/home", with: "path: \"/srv/nfs/home \""),
      expect: "`/srv/nfs/home ` begins or ends with a blank", line: 13),
    Case(
      name: "module path ends with a blank",
      yaml: base.replacingOccurrences(of: "home: /srv/backup/home", with: "home: \"/srv/backup/home \""),
      expect: "begins or ends with a blank", line: 7),
    Case(
      name: "exclude pattern begins with a blank",
      yaml: base.replacingOccurrences(
        of: "to: [bk1/home]", with: "to: [bk1/home]\n        excludes: [\"*.tmp\", \" cache\"]"),
      expect: "exclude pattern ` cache` begins or ends with a blank", line: 15),
    Case(
      name: "injection in host name",
      yaml: base.replacingOccurrences(of: "  nfs1:", with: "  \"a; rm -rf /\":"),
      expect: "not safe as a file name", line: 9),
    Case(
      name: "backticks in directory name",
      yaml: base.replacingOccurrences(of: "    home:\n        path", with: "    \"`reboot`\":\n        path"),
      expect: "not safe as a file name", line: 12),
    Case(
      name: "path traversal in module name",
      yaml: base.replacingOccurrences(of: "home: /srv/backup/home", with: "../etc: /srv/backup/home"),
      expect: "not safe as a file name", line: 7),
    Case(
      name: "one name under both roles at two addresses",
      yaml: base.replacingOccurrences(of: "  nfs1:", with: "  bk1:"),
      expect: "bk1 is under `sources:` at 10.0.0.11 and under `backups:` at 10.0.0.21", line: 3),
    Case(
      name: "duplicate key",
      yaml: base.replacingOccurrences(
        of: "    address: 10.0.0.11\n", with: "    address: 10.0.0.11\n    address: 10.0.0.12\n"),
      expect: "appears twice", line: 11),
    Case(
      name: "duplicate daemon ports",
      yaml: base.replacingOccurrences(
        of: "    main:\n",
        with:
          "    other:\n        port: 8730\n        modules: {x: /srv/x}\n      main:\n        port: 8730\n"),
      expect: "port 8730 on bk1 is used twice", line: 9),
    Case(
      name: "duplicate directory path",
      yaml: base + "\n      home2:\n        path: /srv/nfs/home\n        to: [bk1/home]\n",
      expect: "repeats path", line: 16),
    Case(
      name: "nested directories",
      yaml: base + "\n      sub:\n        path: /srv/nfs/home/sub\n        to: [bk1/home]\n",
      expect: "overlaps", line: 16),
    Case(
      name: "unknown backup host",
      yaml: base.replacingOccurrences(of: "to: [bk1/home]", with: "to: [bk2/home]"),
      expect: "not under `backups:`", line: 14),
    Case(
      name: "unknown module",
      yaml: base.replacingOccurrences(of: "to: [bk1/home]", with: "to: [bk1/homes]"),
      expect: "does not have", line: 14),
    Case(
      name: "destination without module",
      yaml: base.replacingOccurrences(of: "to: [bk1/home]", with: "to: [bk1]"),
      expect: "is not BACKUP/MODULE", line: 14),
    Case(
      name: "secret in plain text",
      yaml: base.replacingOccurrences(
        of: "home: /srv/backup/home", with: "home: {path: /srv/backup/home, secret: hunter2}"),
      expect: "secrets are never written", line: 7),
    Case(
      name: "unknown group",
      yaml: base.replacingOccurrences(
        of: "    address: 10.0.0.11\n", with: "    address: 10.0.0.11\n    groups: [east]\n"),
      expect: "not declared under `groups:`", line: 11),
    Case(
      name: "bad host key policy",
      yaml: "defaults:\n  ssh:\n    host_key_policy: \"no\"\n" + base, expect: "host_key_policy", line: 3),
    Case(
      name: "workers is a list",
      yaml: base.replacingOccurrences(of: "to: [bk1/home]", with: "to: [bk1/home]\n        workers: [4]"),
      expect: "must be a whole number", line: 15),
    Case(
      name: "address with shell",
      yaml: base.replacingOccurrences(of: "address: 10.0.0.11", with: "address: \"10.0.0.11;reboot\""),
      expect: "not a host name or IP address", line: 10),
    Case(
      name: "missing address",
      yaml: base.replacingOccurrences(of: "    address: 10.0.0.11\n", with: ""), expect: "has no `address`",
      line: 10),
    Case(
      name: "two directories into one module",
      yaml: base + "\n      other:\n        path: /srv/nfs/other\n        to: [bk1/home]\n",
      expect: "already receives", line: 17),
    Case(
      name: "module inside another module",
      yaml: base.replacingOccurrences(
        of: "home: /srv/backup/home\n",
        with: "home: /srv/backup/home\n          inner: /srv/backup/home/x\n"),
      expect: "nests with the module at /srv/backup/home (line 7)", line: 8),
    Case(
      name: "module around another module",
      yaml: base.replacingOccurrences(
        of: "home: /srv/backup/home\n", with: "home: /srv/backup/home\n          all: /srv/backup\n"),
      expect: "so it would wipe /srv/backup/home", line: 8),
    Case(
      name: "module named like a read-only view",
      yaml: base.replacingOccurrences(of: "home: /srv/backup/home", with: "home.mirror: /srv/backup/home"),
      expect: "ends in `.mirror`, which names a module's read-only view", line: 7),
    Case(
      name: "module in fleetsync's own state",
      yaml: base.replacingOccurrences(of: "home: /srv/backup/home", with: "home: /var/lib/fleetsync/home"),
      expect: "overlaps /var/lib/fleetsync, where fleetsync keeps its own files", line: 7),
    Case(
      name: "source directory around fleetsync's logs",
      yaml: base.replacingOccurrences(of: "path: /srv/nfs/home", with: "path: /var/log"),
      expect: "overlaps /var/log/fleetsync", line: 13),
  ]

  @Test func modulesSideBySideWithACommonPrefixAreFine() {
    let yaml = base.replacingOccurrences(
      of: "home: /srv/backup/home\n", with: "home: /srv/backup/home\n          homes: /srv/backup/homes\n")
    #expect(issues(yaml).isEmpty)
  }

  @Test(arguments: malformed)
  func malformedInventoryGivesLocatedError(_ c: Case) {
    let found = issues(c.yaml)
    let match = found.first { $0.message.contains(c.expect) }
    #expect(match != nil, "expected an issue containing \"\(c.expect)\", got: \(found)")
    if let match {
      #expect(match.line == c.line, "line of: \(match)")
      #expect(match.file == "inv.yaml")
    }
  }

  @Test func secretValueNeverAppearsInErrors() {
    let yaml = base.replacingOccurrences(
      of: "home: /srv/backup/home", with: "home: {path: /srv/backup/home, password: S3cr3t-Value}")
    let text = issues(yaml).map(\.description).joined()
    #expect(text.contains("secrets are never written"))
    #expect(!text.contains("S3cr3t-Value"))
  }

  @Test func allErrorsAreReportedAtOnce() {
    let yaml =
      base
      .replacingOccurrences(of: "path: /srv/nfs/home", with: "path: relative")
      .replacingOccurrences(of: "address: 10.0.0.21", with: "address: \"a b\"")
      .replacingOccurrences(of: "    main:\n", with: "    main:\n        port: -1\n")
    #expect(issues(yaml).count >= 3)
  }

  @Test func suggestionsNameTheIntendedKey() {
    let yaml = base.replacingOccurrences(
      of: "to: [bk1/home]", with: "to: [bk1/home]\n        batch_delay: 100")
    let hint = issues(yaml).first?.hint ?? ""
    #expect(hint.contains("batch_delay_ms"))
  }
}

/// `max_delete`: defaults, layering, and refusals.
@Suite struct MaxDeleteInventoryTests {
  @Test func maxDeleteLayersLikeTheOtherWatchSettings() throws {
    let plain = try Inventory.parse(yaml: base, file: "inv.yaml")
    #expect(plain.sources[0].directories[0].watch.maxDelete == .default)
    let yaml = "defaults:\n  watch:\n    max_delete: 5%\n" + base + "\n        max_delete: 200,5%\n"
    let layered = try Inventory.parse(yaml: yaml, file: "inv.yaml")
    #expect(layered.sources[0].directories[0].watch.maxDelete == DeleteLimit(count: 200, percent: 5))
    let global = try Inventory.parse(
      yaml: "defaults:\n  watch:\n    max_delete: unlimited\n" + base, file: "i")
    #expect(global.sources[0].directories[0].watch.maxDelete.isUnlimited)
  }

  @Test func aBadMaxDeleteIsRefusedWithItsLocation() {
    for value in ["none", "~", "[1]", "150%"] {
      let found = issues(base + "\n        max_delete: \(value)\n")
      #expect(found.count == 1, "\(value): \(found)")
      #expect(found.first?.line == 15, "\(value): \(found)")
    }
  }
}

/// `mass_change`: the default, layering, and refusals.
@Suite struct MassChangeInventoryTests {
  @Test func massChangeLayersLikeTheOtherWatchSettings() throws {
    let plain = try Inventory.parse(yaml: base, file: "inv.yaml")
    #expect(plain.sources[0].directories[0].watch.massChange == .default)
    let yaml =
      "defaults:\n  watch:\n    mass_change: \"off\"\n" + base + "\n        mass_change: 2000,5x,10m\n"
    let layered = try Inventory.parse(yaml: yaml, file: "inv.yaml")
    #expect(
      layered.sources[0].directories[0].watch.massChange
        == MassChangeLimit(minFiles: 2_000, factor: 5, windowSeconds: 600))
    let global = try Inventory.parse(
      yaml: "defaults:\n  watch:\n    mass_change: \"off\"\n" + base, file: "i")
    #expect(global.sources[0].directories[0].watch.massChange.isOff)
  }

  @Test func aBadMassChangeIsRefusedWithItsLocation() {
    for value in ["500", "~", "[1]", "500,10,5m", "500,10x,1d"] {
      let found = issues(base + "\n        mass_change: \(value)\n")
      #expect(found.count == 1, "\(value): \(found)")
      #expect(found.first?.line == 15, "\(value): \(found)")
    }
  }
}

/// `backend`: the default, layering, and refusals.
@Suite struct EventBackendInventoryTests {
  @Test func backendLayersLikeTheOtherWatchSettings() throws {
    let plain = try Inventory.parse(yaml: base, file: "inv.yaml")
    #expect(plain.sources[0].directories[0].watch.backend == .auto)
    let yaml = "defaults:\n  watch:\n    backend: inotify\n" + base + "\n        backend: fanotify\n"
    let layered = try Inventory.parse(yaml: yaml, file: "inv.yaml")
    #expect(layered.sources[0].directories[0].watch.backend == .fanotify)
    let global = try Inventory.parse(yaml: "defaults:\n  watch:\n    backend: inotify\n" + base, file: "i")
    #expect(global.sources[0].directories[0].watch.backend == .inotify)
  }

  @Test func anUnknownBackendIsRefusedWithItsLocationAndTheChoices() {
    for value in ["fanotfy", "~", "[inotify]", "INOTIFY"] {
      let found = issues(base + "\n        backend: \(value)\n")
      #expect(found.count == 1, "\(value): \(found)")
      #expect(found.first?.line == 15, "\(value): \(found)")
      if value == "fanotfy" {
        #expect(found.first?.hint?.contains("`fanotify`") == true, "\(found)")
      }
    }
  }
}
