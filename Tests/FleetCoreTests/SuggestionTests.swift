import FleetCore
import Testing

@Suite struct SuggestionTests {
  @Test(arguments: [
    ("batch_delay", ["source", "batch-delay", "workers"], "batch-delay"),
    ("Workers", ["source", "batch-delay", "workers"], "workers"),
    ("adress", ["address", "groups", "ssh"], "address"),
    ("batch_delay", ["batch_delay_ms", "workers"], "batch_delay_ms"),
    ("retry", ["retry-max", "rsync-path"], "retry-max"),
    ("full-sync-intervals", ["full-sync-interval"], "full-sync-interval"),
    ("--sourse", ["--source", "--target"], "--source"),
  ])
  func namesTheLikelyCandidate(word: String, candidates: [String], expected: String) {
    #expect(Suggestion.closest(to: word, among: candidates) == expected)
    #expect(Suggestion.didYouMean(word, among: candidates) == "did you mean `\(expected)`?")
  }

  @Test func staysQuietWhenNothingIsClose() {
    #expect(Suggestion.closest(to: "colour", among: ["source", "target", "workers"]) == nil)
    #expect(Suggestion.closest(to: "x", among: ["exclude"]) == nil)
    #expect(Suggestion.closest(to: "anything", among: []) == nil)
  }

  @Test func theClosestWinsAndTheEarlierOnATie() {
    #expect(Suggestion.closest(to: "port", among: ["sort", "ports", "part"]) == "sort")
    #expect(Suggestion.closest(to: "prot", among: ["port", "prod"]) == "prod")
  }
}
