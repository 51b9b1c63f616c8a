import FleetCore
import Testing

@Suite struct ShellQuoteTests {
  @Test(arguments: [
    "plain", "with space", "it's", "$(reboot)", "`id`", "a\nb", "-rf", "", "'", "\\", "*", "~root",
  ])
  func quotedWordIsOneLiteralWord(word: String) throws {
    let quoted = try ShellQuote.quote(word)
    #expect(quoted.hasPrefix("'"))
    #expect(quoted.hasSuffix("'"))
  }

  @Test func nulIsRefused() {
    #expect(throws: FleetError.self) { try ShellQuote.quote("a\u{0}b") }
  }

  @Test func leadingDashPathGetsDotSlash() throws {
    #expect(try ShellQuote.path("-rf") == "'./-rf'")
    #expect(try ShellQuote.path("/abs") == "'/abs'")
  }

  @Test func secretNeverPrints() {
    let s = Secret("hunter2")
    #expect("\(s)" == "<redacted>")
    #expect(String(reflecting: s) == "<redacted>")
    #expect(s.revealed == "hunter2")
  }
}
