import FleetCore
import Foundation
import Testing

@testable import FleetWatch

/// `max_delete` values, the delete budget's decisions, and reading rsync's delete counts.
@Suite struct DeleteLimitTests {
  @Test func limitsParseAndPrintAsWritten() throws {
    for text in ["1000", "10%", "1000,10%", "0", "unlimited", "10%,1000"] {
      let limit = try DeleteLimit.parse(text)
      #expect(try DeleteLimit.parse(limit.description) == limit)
    }
    #expect(try DeleteLimit.parse("10%,1000") == DeleteLimit(count: 1_000, percent: 10))
    #expect(DeleteLimit.default.description == "1000,10%")
    #expect(try DeleteLimit.parse("unlimited").isUnlimited)
  }

  @Test func badLimitsAreRefusedWithTheSyntax() {
    for text in ["", "none", "off", "-1", "101%", "10%,20%", "1,2", "1,2,3", "1k", " 10", "10 %"] {
      #expect {
        try DeleteLimit.parse(text)
      } throws: { error in
        (error as? FleetError)?.message.contains("unlimited") == true
      }
    }
  }

  @Test func theLargerOfCountAndPercentageApplies() {
    #expect(DeleteLimit.default.allowed(moduleFiles: 100) == 1_000)
    #expect(DeleteLimit.default.allowed(moduleFiles: 50_000) == 5_000)
    #expect(DeleteLimit(count: nil, percent: 10).allowed(moduleFiles: 999) == 99)
    #expect(DeleteLimit(count: 0, percent: nil).allowed(moduleFiles: 1_000_000) == 0)
    #expect(DeleteLimit.unlimited.allowed(moduleFiles: 10) == nil)
  }

  private let second: UInt64 = 1_000_000_000
  private let date = Date(timeIntervalSince1970: 1_000_000)

  @Test func deletesWithinTheWindowAddUp() {
    var budget = DeleteBudget(limit: DeleteLimit(count: 1_000, percent: nil), window: 600 * second)
    #expect(budget.decide(deletes: 600, paths: ["a"], now: 10 * second, date: date) == .apply(cap: 600))
    // A mass delete split over batches is still one mass delete.
    #expect(budget.decide(deletes: 600, paths: ["b", "c"], now: 20 * second, date: date) == .hold)
    #expect(budget.held == DeleteBudget.Held(count: 600, since: date, paths: ["b", "c"]))
    #expect(budget.decide(deletes: 400, paths: ["d"], now: 30 * second, date: date) == .apply(cap: 400))
    // After the window, the same count fits again.
    #expect(budget.decide(deletes: 1_000, paths: ["e"], now: 700 * second, date: date) == .apply(cap: 1_000))
  }

  @Test func aWholeTreeCountReplacesTheHeldCountAndClearsItWhenItFits() {
    var budget = DeleteBudget(limit: DeleteLimit(count: 1_000, percent: nil))
    #expect(budget.decide(deletes: 1_500, paths: ["x"], now: second, date: date) == .hold)
    #expect(budget.decide(deletes: 2_000, paths: nil, now: 2 * second, date: date) == .hold)
    #expect(budget.held?.count == 2_000)
    #expect(budget.held?.paths == ["x"])
    // The files came back: nothing is left to delete, nothing is held.
    #expect(budget.decide(deletes: 0, paths: nil, now: 3 * second, date: date) == .apply(cap: 0))
    #expect(budget.held == nil)
    #expect(budget.decide(deletes: 3_000, paths: nil, now: 4 * second, date: date) == .hold)
    #expect(budget.decide(deletes: 10, paths: nil, now: 5 * second, date: date) == .apply(cap: 10))
    #expect(budget.held == nil)
  }

  @Test func aReleaseAppliesWhatIsHeldOnceAndNoMore() {
    var budget = DeleteBudget(limit: DeleteLimit(count: 1_000, percent: nil))
    #expect(budget.decide(deletes: 2_000, paths: nil, now: second, date: date) == .hold)
    // A batch does not use the release: only a whole-tree count does.
    budget.releaseRequested = true
    #expect(budget.decide(deletes: 1_500, paths: ["b"], now: 2 * second, date: date) == .hold)
    #expect(budget.releaseRequested)
    #expect(budget.decide(deletes: 3_500, paths: nil, now: 3 * second, date: date) == .apply(cap: 3_500))
    #expect(!budget.releaseRequested && budget.held == nil)
    // Far more gone than was held when released: held anew, the release is used up.
    #expect(budget.decide(deletes: 5_000, paths: nil, now: 900 * second, date: date) == .hold)
    budget.releaseRequested = true
    #expect(budget.decide(deletes: 20_000, paths: nil, now: 901 * second, date: date) == .hold)
    #expect(!budget.releaseRequested)
    #expect(budget.held?.count == 20_000)
  }

  @Test func aPercentageLimitFollowsWhatTheModuleHeld() {
    var budget = DeleteBudget(limit: DeleteLimit(count: nil, percent: 10))
    // The source lists 100 files, 0 new; 900 are counted for deletion: the module held 1,000.
    budget.fullSyncCounted(listed: 100, created: 0, deletes: 900)
    #expect(budget.allowed == 100)
    #expect(budget.decide(deletes: 900, paths: nil, now: second, date: date) == .hold)
    budget.fullSyncCounted(listed: 2_000, created: 0, deletes: 150)
    #expect(budget.decide(deletes: 150, paths: nil, now: 2 * second, date: date) == .apply(cap: 150))
  }

  @Test func heldDeletesAreRecountedAfterTheInterval() {
    var budget = DeleteBudget(limit: DeleteLimit(count: 0, percent: nil))
    #expect(!budget.recountDue(now: 100 * second, interval: 60 * second))
    #expect(budget.decide(deletes: 1, paths: nil, now: 100 * second, date: date) == .hold)
    #expect(!budget.recountDue(now: 159 * second, interval: 60 * second))
    #expect(budget.recountDue(now: 160 * second, interval: 60 * second))
  }

  @Test func rsyncCountsAreRead() {
    let stderr = """
      cannot delete non-empty directory: d
      Deletions stopped due to --max-delete limit (2,000 skipped)
      rsync error: the --max-delete limit stopped deletions (code 25) at main.c(1394) [sender=3.5.0]
      """
    #expect(RsyncCommand.skippedDeletes(stderr) == 2_000)
    #expect(RsyncCommand.skippedDeletes("Deletions stopped due to --max-delete limit (8 skipped)") == 8)
    #expect(RsyncCommand.skippedDeletes("sent 10 bytes") == nil)
    let stats = "Number of files: 2,006 (reg: 2,005, dir: 1)\nNumber of created files: 1 (reg: 1)\n"
    #expect(RsyncCommand.stat("Number of files:", in: stats) == 2_006)
    #expect(RsyncCommand.stat("Number of created files:", in: stats) == 1)
    #expect(RsyncCommand.stat("Number of deleted files:", in: stats) == 0)
    let dryRun =
      (1...9).map { "deleting bulk/f\($0)" }.joined(separator: "\n") + "\ndeleting bulk/\nsent 1 bytes\n"
    #expect(RsyncCommand.deletedPaths(dryRun) == (1...5).map { "bulk/f\($0)" })
  }
}
