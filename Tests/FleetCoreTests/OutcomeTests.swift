import FleetCore
import Testing

/// The one mapping from error meanings to host outcomes and exit statuses.
@Suite struct OutcomeTests {
  static func error(_ meaning: FleetError.Meaning) -> FleetError {
    FleetError(FleetError.Code("test.\(meaning)", meaning: meaning), "what happened")
  }

  @Test func hostOutcomeFollowsTheErrorsMeaning() {
    #expect(HostOutcome(Self.error(.unreachable)) == .unreachable("what happened"))
    #expect(HostOutcome(Self.error(.auth)) == .auth("what happened"))
    #expect(HostOutcome(Self.error(.failed)) == .failed("what happened"))
    // Not done, and not "nothing was touched": failed.
    #expect(HostOutcome(Self.error(.cancelled)) == .failed("what happened"))
    #expect(HostOutcome(Self.error(.invalidInput)) == .failed("what happened"))
    #expect(HostOutcome(Self.error(.invalidInventory)) == .failed("what happened"))
  }

  @Test func hostOutcomeKeepsTheCause() {
    let error = FleetError(.io, "cannot read", cause: SendableErrorBox("EACCES"))
    #expect(HostOutcome(error) == .failed("cannot read: EACCES"))
    #expect(HostOutcome(error).detail == "cannot read: EACCES")
    #expect(HostOutcome.changed.detail == "")
  }

  @Test func wordsAndSuccess() {
    let all: [HostOutcome] = [.ok, .changed, .failed("x"), .auth("x"), .unreachable("x")]
    #expect(all.map(\.word) == ["ok", "changed", "failed", "auth", "unreachable"])
    #expect(all.map(\.succeeded) == [true, true, false, false, false])
  }

  @Test func aCommandStoppedByAnErrorExitsByItsMeaning() {
    #expect(ExitStatus(Self.error(.invalidInput)).rawValue == 64)
    #expect(ExitStatus(Self.error(.invalidInventory)).rawValue == 65)
    #expect(ExitStatus(Self.error(.cancelled)).rawValue == 130)
    for meaning in [FleetError.Meaning.failed, .unreachable, .auth] {
      #expect(ExitStatus(Self.error(meaning)).rawValue == 1, "\(meaning)")
    }
    #expect(ExitStatus(FleetError(.invalidInput, "bad --limit")) == .usage)
    #expect(ExitStatus(FleetError(.internal, "bug")) == .localError)
  }

  @Test func aMultiHostCommandExitsByItsHostsOutcomes() {
    let cases: [([HostOutcome], Int32)] = [
      ([], 0),
      ([.ok, .changed], 0),
      ([.ok, .failed("x")], 2),
      ([.changed, .auth("x")], 2),
      ([.ok, .unreachable("x")], 3),
      ([.failed("x"), .unreachable("y")], 4),
      ([.auth("x"), .unreachable("y"), .ok], 4),
    ]
    for (outcomes, status) in cases {
      #expect(ExitStatus(outcomes).rawValue == status, "\(outcomes)")
    }
  }

  @Test func helpListsEveryStatusInOrder() {
    let lines = ExitStatus.helpText.split(separator: "\n").dropFirst()
    #expect(lines.count == ExitStatus.allCases.count)
    let numbers = lines.compactMap { Int32($0.split(separator: " ").first ?? "") }
    #expect(numbers == [0, 1, 2, 3, 4, 64, 65, 130])
  }
}
