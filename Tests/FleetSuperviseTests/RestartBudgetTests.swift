import Foundation
import Testing

@testable import FleetSupervise

/// The restart budget and backoffs of `supervise`, on a clock the test moves.
@Suite struct RestartBudgetTests {
  let t0 = Date(timeIntervalSince1970: 1_795_000_000)

  @Test func backoffDoublesBetweenRestartsAndTheHourlyBudgetEndsThem() {
    let budget = RestartBudget()
    #expect(budget.take("s1/watch@a", now: t0) == nil)
    #expect(budget.take("s1/watch@a", now: t0 + 5)?.contains("backing off") == true)
    #expect(budget.take("s1/watch@a", now: t0 + 10) == nil)  // 10 s after the first
    #expect(budget.take("s1/watch@a", now: t0 + 29)?.contains("backing off") == true)
    #expect(budget.take("s1/watch@a", now: t0 + 30) == nil)  // 20 s after the second
    #expect(budget.take("s1/watch@a", now: t0 + 70) == nil)  // 40 s
    #expect(budget.take("s1/watch@a", now: t0 + 150) == nil)  // 80 s: the fifth within the hour
    let spent = budget.take("s1/watch@a", now: t0 + 3000)
    #expect(
      spent?.contains("restart budget spent: 5 starts or restarts within the last hour") == true,
      "\(spent ?? "")")
    #expect(budget.take("s1/watch@a", now: t0 + 3601) == nil, "the first restart is an hour old")
    #expect(budget.take("s2/watch@a", now: t0 + 1) == nil, "every instance has its own budget")
  }

  @Test func aLongHealthySpellStartsTheBackoffOver() {
    let budget = RestartBudget()
    #expect(budget.take("k", now: t0) == nil)
    #expect(budget.take("k", now: t0 + 10) == nil)  // next backoff 20 s
    budget.healthy("k", now: t0 + 15)  // healthy right after: still a crash loop
    #expect(budget.take("k", now: t0 + 20) != nil)
    budget.healthy("k", now: t0 + 10 + 600)
    #expect(budget.take("k", now: t0 + 10 + 601) == nil)
    #expect(budget.take("k", now: t0 + 10 + 605) != nil, "backing off from 10 s again")
  }

  @Test func anUnreachableHostIsTriedAgainAfterADoublingBackoff() {
    let budget = RestartBudget()
    #expect(budget.hostDue("h", now: t0))
    #expect(budget.hostFailed("h", interval: 30, now: t0) == t0 + 30)
    #expect(!budget.hostDue("h", now: t0 + 29) && budget.hostDue("h", now: t0 + 30))
    #expect(budget.hostFailed("h", interval: 30, now: t0 + 30) == t0 + 90)
    budget.hostAnswered("h")
    #expect(budget.hostDue("h", now: t0 + 31))
  }
}
