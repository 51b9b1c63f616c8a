import FleetWire
import Foundation
import Testing

/// docs/watcher.md, found from this file's path.
private func watcherDoc() throws -> String {
  var url = URL(fileURLWithPath: #filePath)
  while url.path != "/" {
    url.deleteLastPathComponent()
    let doc = url.appendingPathComponent("docs/watcher.md").path
    if FileManager.default.fileExists(atPath: doc) { return try String(contentsOfFile: doc, encoding: .utf8) }
  }
  throw CocoaError(.fileNoSuchFile)
}

@Suite("The table of watcher config keys")
struct WatcherConfigKeyTests {
  /// The config-file table in docs/watcher.md lists the keys in the table's order, with the same rules.
  @Test func docsListEveryKeyInOrder() throws {
    let section = try #require(
      try watcherDoc().components(separatedBy: "## Config file").last?.components(separatedBy: "\n## ").first)
    let rows = section.split(separator: "\n").filter { $0.hasPrefix("| `") }.map {
      $0.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
    }
    #expect(rows.map { $0[0] } == WatcherConfigKey.allCases.map { "`\($0.name)`" })
    for (row, key) in zip(rows, WatcherConfigKey.allCases) {
      #expect(row[1].hasPrefix("yes") == key.isRequired, "\(key)")
      #expect(row[1].contains("repeatable") == key.isRepeatable, "\(key)")
    }
  }

  /// The command-line synopsis in docs/watcher.md shows exactly the quick form's flags.
  @Test func docsShowEveryQuickFormFlag() throws {
    let doc = try watcherDoc()
    let synopsis = try #require(
      doc.components(separatedBy: "## Command line").last?.components(separatedBy: "```").dropFirst().first)
    let flags = Set(
      synopsis.split(whereSeparator: { " []\n.".contains($0) }).filter { $0.hasPrefix("--") }.map(String.init)
    )
    #expect(flags == Set(WatcherConfigKey.allCases.compactMap(\.flag) + ["--config", "--log-level"]))
  }

  @Test func flagsNameOnlyQuickFormKeys() {
    #expect(WatcherConfigKey(flag: "--batch-delay") == .batchDelay)
    #expect(WatcherConfigKey(flag: "--io-timeout") == nil)
    #expect(WatcherConfigKey(flag: "batch-delay") == nil)
    #expect(WatcherConfigKey.ioTimeout.flag == nil)
  }
}

@Suite("The watcher config file's syntax")
struct WatcherConfigFileTests {
  @Test func readsSettingsAndSkipsBlankLinesAndComments() {
    let (lines, last) = WatcherConfigFile.read(
      "# comment\n\n  source = /a b =c \r\n   # indented comment\nexclude=#x\nbogus = 1\nno equals\n")
    #expect(last == 7)
    #expect(lines.map(\.number) == [3, 5, 6, 7])
    #expect(
      lines.map(\.content) == [
        .setting(.source, "/a b =c"), .setting(.exclude, "#x"), .unknownKey("bogus"),
        .notKeyValue("no equals"),
      ])
  }

  @Test func writesWhatItReadsBack() throws {
    var writer = WatcherConfigFile.Writer()
    let values = ["/srv/a b", "=x=", "#not a comment", "ünï", "a\u{00a0}b"]
    for value in values { try writer.add(.exclude, value) }
    try writer.add(.source, "/srv")
    let read = WatcherConfigFile.read(writer.text).lines.map(\.content)
    #expect(read == values.map { .setting(.exclude, $0) } + [.setting(.source, "/srv")])
  }

  @Test(arguments: ["", " lead", "trail ", "tab\t", "nbsp\u{00a0}", "two\nlines", "cr\r"])
  func refusesWhatWouldReadBackDifferently(value: String) {
    #expect(WatcherConfigFile.problem(with: value) != nil)
    var writer = WatcherConfigFile.Writer()
    #expect(throws: (any Error).self) { try writer.add(.exclude, value) }
  }

  @Test func refusesASingleKeyTwice() throws {
    var writer = WatcherConfigFile.Writer()
    try writer.add(.source, "/a")
    #expect(throws: (any Error).self) { try writer.add(.source, "/b") }
  }
}
