import FleetCore
import FleetTestSupport
import Foundation
import Logging
import Testing

@testable import FleetWatch

#if canImport(Glibc)
  import Glibc
#endif

@Suite("RsyncTarget parsing")
struct RsyncTargetTests {
  @Test func fullForm() throws {
    let t = try RsyncTarget.parse("rsync://backup@10.0.0.2:8730/data/web/site")
    #expect(t.user == "backup")
    #expect(t.host == "10.0.0.2")
    #expect(t.port == 8730)
    #expect(t.module == "data")
    #expect(t.subdir == "web/site")
    #expect(t.url == "rsync://backup@10.0.0.2:8730/data/web/site")
  }

  @Test func minimalForms() throws {
    let t = try RsyncTarget.parse("rsync://host/mod")
    #expect(t.user == nil && t.port == nil && t.subdir == nil)
    #expect(t.url == "rsync://host/mod")
    let trailing = try RsyncTarget.parse("rsync://u@host/mod/")
    #expect(trailing.subdir == nil && trailing.module == "mod")
    let v6 = try RsyncTarget.parse("rsync://u@[fd00::2]:873/m")
    #expect(v6.host == "fd00::2" && v6.port == 873)
    #expect(v6.url == "rsync://u@[fd00::2]:873/m")
    #expect(try RsyncTarget.parse(v6.url) == v6)
  }

  @Test(arguments: [
    "host/mod", "rsync://host", "rsync://host/", "rsync://u:pw@host/mod", "rsync://@host/mod",
    "rsync://host:0/mod", "rsync://host:99999/mod", "rsync://host:x/mod", "rsync://host/mod/../x",
    "rsync:///mod", "rsync://ho st/mod",
  ])
  func rejects(_ url: String) {
    #expect(throws: FleetError.self) { try RsyncTarget.parse(url) }
  }

  @Test func passwordNeverEchoed() {
    do {
      _ = try RsyncTarget.parse("rsync://u:hunter2@host/mod")
      Issue.record("accepted a URL with a password")
    } catch let e as FleetError {
      #expect(e.code == .invalidInput)
      #expect(e.message.contains("password file"))
    } catch {
      Issue.record("unexpected error \(error)")
    }
  }
}

@Suite("Exclude matching")
struct ExcludeTests {
  @Test func basenamePatterns() {
    let m = ExcludeMatcher(["*.tmp", "node_modules", ".git/"])
    #expect(m.isExcluded(b("a.tmp"), isDirectory: false))
    #expect(m.isExcluded(b("x/y/a.tmp"), isDirectory: false))
    #expect(!m.isExcluded(b("x/a.tmpx"), isDirectory: false))
    #expect(m.isExcluded(b("src/node_modules/lib/index.js"), isDirectory: false))
    #expect(m.isExcluded(b(".git"), isDirectory: true))
    #expect(!m.isExcluded(b(".git"), isDirectory: false))  // dir-only pattern, a file named .git
    #expect(m.isExcluded(b(".git/config"), isDirectory: false))  // inside the excluded directory
    #expect(!m.isExcluded(b("src/main.swift"), isDirectory: false))
  }

  @Test func anchoredAndPathPatterns() {
    let m = ExcludeMatcher(["/build", "cache/*.bin", "logs/**/old", "[ab]?.txt"])
    #expect(m.isExcluded(b("build"), isDirectory: true))
    #expect(m.isExcluded(b("build/out.o"), isDirectory: false))
    #expect(!m.isExcluded(b("sub/build"), isDirectory: true))
    #expect(m.isExcluded(b("cache/x.bin"), isDirectory: false))
    #expect(m.isExcluded(b("deep/cache/x.bin"), isDirectory: false))
    #expect(!m.isExcluded(b("cache/sub/x.bin"), isDirectory: false))
    #expect(m.isExcluded(b("logs/2024/01/old"), isDirectory: true))
    #expect(m.isExcluded(b("a1.txt"), isDirectory: false))
    #expect(!m.isExcluded(b("c1.txt"), isDirectory: false))
    #expect(!m.isExcluded(b("a12.txt"), isDirectory: false))
  }

  @Test func nonUTF8Names() {
    let m = ExcludeMatcher(["*.swp"])
    #expect(m.isExcluded([0xFF, 0xFE, 0x2E, 0x73, 0x77, 0x70], isDirectory: false))
    #expect(!m.isExcluded([0xFF, 0xFE], isDirectory: false))
    #expect(ExcludeMatcher([]).isEmpty)
  }
}

@Suite("rsync exit classification and stats")
struct RsyncClassificationTests {
  let target = RsyncTarget(user: "u", host: "h", port: 873, module: "data")

  @Test func classifies() {
    #expect(
      RsyncCommand.classify(exitCode: 0, stdout: "", stderr: "", target: target) == .ok(files: 0, bytes: 0))
    #expect(
      RsyncCommand.classify(exitCode: 23, stdout: "", stderr: "x", target: target).errorKind == .partial)
    #expect(
      RsyncCommand.classify(exitCode: 24, stdout: "", stderr: "", target: target).errorKind == .partial)
    let auth = RsyncCommand.classify(
      exitCode: 5, stdout: "", stderr: "@ERROR: auth failed on module data\nrsync error: ...", target: target)
    #expect(auth.errorKind == .auth)
    #expect(auth.message?.contains("'data'") == true)
    #expect(
      RsyncCommand.classify(exitCode: 10, stdout: "", stderr: "refused", target: target).errorKind
        == .unreachable)
    #expect(
      RsyncCommand.classify(exitCode: 35, stdout: "", stderr: "", target: target).errorKind == .unreachable)
    #expect(
      RsyncCommand.classify(exitCode: 30, stdout: "", stderr: "", target: target).errorKind == .timeout)
    let unknown = RsyncCommand.classify(
      exitCode: 5, stdout: "", stderr: "@ERROR: Unknown module 'nope'\n", target: target)
    #expect(unknown.errorKind == .rsync)
    #expect(unknown.message?.contains("Unknown module") == true)
    #expect(RsyncCommand.classify(exitCode: 12, stdout: "", stderr: "", target: target).errorKind == .rsync)
  }

  @Test func parsesStats() {
    let out = """
      Number of files: 3 (reg: 2, dir: 1)
      Number of regular files transferred: 1,234
      Total file size: 9 bytes
      Total transferred file size: 5,000,000 bytes
      """
    #expect(RsyncCommand.parseStats(out) == (1234, 5_000_000))
    #expect(RsyncCommand.parseStats("") == (0, 0))
  }

  @Test func argumentsNeverHoldThePassword() {
    var c = WatchConfig(source: "/src", target: target, stateDir: "/state")
    c.passwordFile = "/etc/pw"
    c.excludes = ["*.tmp"]
    let cmd = RsyncCommand(config: c)
    let args = cmd.listArguments("/state/l")
    #expect(args.contains("--password-file=/etc/pw"))
    #expect(args.contains("--files-from=/state/l") && args.contains("--from0"))
    #expect(args.contains("--delete-missing-args") && args.contains("--force"))
    #expect(args.contains("--exclude=*.tmp"))
    #expect(args.suffix(2) == ["/src/", "rsync://u@h:873/data/"])
    #expect(cmd.fullArguments.contains("--delete"))
    #expect(cmd.treeArguments("/l").contains("-r"))
    #expect(args.contains("--timeout=30") && args.contains("--contimeout=10"))
    #expect(args.contains("--sockopts=TCP_NODELAY"))
    // The root's own attributes: everything at the top excluded, no path list.
    #expect(cmd.rootArguments.contains("--exclude=/*"))
    #expect(!cmd.rootArguments.contains { $0.hasPrefix("--files-from") || $0 == "--delete" })
    #expect(cmd.rootArguments.suffix(2) == ["/src/", "rsync://u@h:873/data/"])
  }
}

@Suite("inotify events from a real inotify descriptor", .dependsOnInotifyLimits)
struct InotifyTests {
  @Test func parsesRealEvents() throws {
    let dir = try makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
    #expect(fd >= 0)
    defer { close(fd) }
    let wd = inotify_add_watch(fd, dir, watchMask)
    #expect(wd >= 0)
    let weird: [UInt8] = [0x66, 0xFF, 0x0A, 0x27]  // f, 0xFF, newline, quote
    let path = b(dir) + [UInt8(ascii: "/")] + weird
    let f = open(path.map { CChar(bitPattern: $0) } + [0], O_WRONLY | O_CREAT, 0o644)
    close(f)
    mkdir(dir + "/sub", 0o755)
    rename(dir + "/sub", dir + "/sub2")
    var buf = [UInt8](repeating: 0, count: 65536)
    let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    #expect(n > 0)
    let events = buf.withUnsafeBytes {
      InotifyEvent.parse(UnsafeRawBufferPointer(rebasing: $0[0..<max(n, 0)]))
    }
    #expect(events.allSatisfy { $0.wd == wd })
    #expect(events.contains { $0.name == weird && $0.mask & UInt32(IN_CREATE) != 0 })
    #expect(events.contains { $0.name == weird && $0.mask & UInt32(IN_CLOSE_WRITE) != 0 })
    #expect(events.contains { $0.name == b("sub") && $0.isDirectory && $0.mask & UInt32(IN_CREATE) != 0 })
    let from = events.first { $0.mask & UInt32(IN_MOVED_FROM) != 0 }
    let to = events.first { $0.mask & UInt32(IN_MOVED_TO) != 0 }
    #expect(from?.name == b("sub") && to?.name == b("sub2") && from?.cookie == to?.cookie)
    // A truncated buffer yields only the complete events.
    let partial = buf.withUnsafeBytes {
      InotifyEvent.parse(UnsafeRawBufferPointer(rebasing: $0[0..<(n - 1)]))
    }
    #expect(partial.count == events.count - 1)
  }

  @Test func dirTableRebuildsPathsAndMoves() {
    var t = DirTable()
    t.set(1, parent: DirTable.rootParent, name: [])
    t.set(2, parent: 1, name: b("a"))
    t.set(3, parent: 2, name: [0xFF])
    t.set(4, parent: 3, name: b("c"))
    #expect(t.path(of: 1) == [])
    #expect(t.path(of: 4) == b("a/") + [0xFF] + b("/c"))
    #expect(t.child(of: 2, named: [0xFF]) == 3)
    t.detach(3)
    #expect(t.path(of: 4) == nil)
    #expect(t.child(of: 2, named: [0xFF]) == nil)
    t.set(3, parent: 1, name: b("moved"))
    #expect(t.path(of: 4) == b("moved/c"))
    #expect(Set(t.subtree(of: 3)) == [3, 4])
    t.remove(4)
    #expect(t.path(of: 4) == nil)
    #expect(t.count == 3)
  }
}

@Suite("Engine configuration checks")
struct WatchConfigTests {
  @Test func rejectsBadSourceAndPasswordFile() throws {
    let dir = try makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let target = RsyncTarget(user: "u", host: "127.0.0.1", module: "m")
    let logger = Logger(label: "test")
    #expect(throws: FleetError.self) {
      try WatchEngine(
        config: WatchConfig(source: dir + "/missing", target: target, stateDir: dir + "/s"), logger: logger)
    }
    #expect(throws: FleetError.self) {
      try WatchEngine(
        config: WatchConfig(source: "relative", target: target, stateDir: dir + "/s"), logger: logger)
    }
    _ = FileManager.default.createFile(atPath: dir + "/file", contents: Data())
    #expect(throws: FleetError.self) {
      try WatchEngine(
        config: WatchConfig(source: dir + "/file", target: target, stateDir: dir + "/s"), logger: logger)
    }
    let pw = dir + "/pw"
    _ = FileManager.default.createFile(atPath: pw, contents: Data("secret\n".utf8))
    chmod(pw, 0o644)
    var c = WatchConfig(source: dir, target: target, stateDir: dir + "/state/nested")
    c.passwordFile = pw
    do {
      _ = try WatchEngine(config: c, logger: logger)
      Issue.record("accepted a world-readable password file")
    } catch let e as FleetError {
      #expect(e.code == .watchPasswordFile)
      #expect(e.message.contains("chmod 600"))
      #expect(!e.message.contains("secret"))
    }
    chmod(pw, 0o600)
    var inside = c
    inside.stateDir = dir + "/state-inside-source"
    #expect(throws: FleetError.self) { try WatchEngine(config: inside, logger: logger) }
    c.source = dir + "/src"
    mkdir(c.source, 0o755)
    let engine = try WatchEngine(config: c, logger: logger)
    #expect(engine.status().state == .starting)
    #expect(FileManager.default.fileExists(atPath: dir + "/state/nested"))
  }

  @Test func healthRules() {
    let now = Date()
    var s = WatchStatus(state: .watching, heartbeat: now)
    #expect(s.isHealthy(at: now))
    s.consecutiveFailures = 2
    s.lastErrorKind = .unreachable
    #expect(s.isHealthy(at: now))  // retrying within bounds
    s.consecutiveFailures = WatchStatus.unhealthyFailureCount
    #expect(!s.isHealthy(at: now))
    s.consecutiveFailures = 1
    s.lastErrorKind = .auth
    #expect(!s.isHealthy(at: now))
    s = WatchStatus(state: .degraded, heartbeat: now)
    #expect(!s.isHealthy(at: now))
    s = WatchStatus(state: .watching, heartbeat: now.addingTimeInterval(-60))
    #expect(!s.isHealthy(at: now))  // the event loop stalled
    #expect(!s.isHealthy)
    let data = try? JSONEncoder().encode(
      WatchStatus(state: .retrying, heartbeat: Date(timeIntervalSince1970: 0)))
    #expect(data.flatMap { try? JSONDecoder().decode(WatchStatus.self, from: $0) }?.state == .retrying)
  }
}
