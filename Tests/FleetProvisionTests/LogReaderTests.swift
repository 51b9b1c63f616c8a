import Testing

@testable import FleetProvision

/// What `fleetsync logs` reads back from its script: the lines, and where to read on from.
@Suite struct LogReaderTests {
  @Test func aJournalReadEndsWithItsCursor() {
    let chunk = LogReader.parse("2026-11-28T04:00:00+0000 a\nb\n@@cursor s=1;i=2\n", instance: "watch@a")
    #expect(chunk.lines == ["2026-11-28T04:00:00+0000 a", "b"] && chunk.next == .cursor("s=1;i=2"))
  }

  @Test func aFileReadEndsWithItsSizeAndNoTrailingBlank() {
    let chunk = LogReader.parse("one\ntwo\n\n@@offset 123\n", instance: "rsyncd@main")
    #expect(chunk.lines == ["one", "two"] && chunk.next == .offset(123))
  }

  @Test func noLogYetOrNoEntriesIsNothing() {
    #expect(LogReader.parse("@@none\n", instance: "x") == LogChunk(instance: "x", lines: [], next: nil))
    #expect(LogReader.parse("-- No entries --\n@@cursor c\n", instance: "x").lines.isEmpty)
  }

  @Test func aFollowReadOfAFileStartsAtItsOffsetAndAShrunkFileFromItsStart() throws {
    let script = try LogReader.script(ServiceName(.rsyncd, "main"), lines: 10, after: .offset(42))
    #expect(script.contains("off=42; [ \"$size\" -lt \"$off\" ] && off=0"))
    #expect(script.contains("tail -c +$((off + 1))"))
    let journal = try LogReader.script(ServiceName(.watch, "a:bk1:m"), lines: 10, after: .cursor("c'1"))
    #expect(journal.contains(#"--after-cursor='c'\''1'"#), "the cursor is quoted: \(journal)")
  }
}
