import Testing

@testable import FleetWatch

@Suite("Change queue: coalescing, de-duplication, sharding")
struct ChangeQueueTests {
  @Test func coalescesAndDeduplicates() {
    var q = ChangeQueue()
    #expect(q.accept([entry("a"), entry("b"), entry("a")], now: 10) == [entry("a"), entry("b")])
    #expect(q.accept([entry("a"), entry("c")], now: 20) == [entry("c")])
    #expect(q.pendingCount == 3)
    #expect(q.oldest == 10)
    let batch = q.take(limit: 10)
    #expect(batch == [entry("a"), entry("b"), entry("c")])  // sorted bytewise
    #expect(q.pendingCount == 0 && q.inFlightCount == 3)
    // Changed again while in flight: pending again, and sent once more later.
    #expect(q.accept([entry("a")], now: 30) == [entry("a")])
    q.done(batch)
    #expect(q.inFlightCount == 0)
    #expect(q.pendingCount == 1)
    #expect(q.oldest == 30)
  }

  @Test func takeIsBoundedOldestFirstAndRequeueKeepsAge() {
    var q = ChangeQueue()
    for i in 0..<100 { _ = q.accept([entry("p\(i)")], now: UInt64(1000 - i)) }
    let first = q.take(limit: 10)
    #expect(first.count == 10)
    #expect(Set(first) == Set((90..<100).map { entry("p\($0)") }))  // the oldest ten
    q.requeue(first)
    #expect(q.pendingCount == 100 && q.inFlightCount == 0)
    #expect(q.oldest == 901)
    #expect(Set(q.take(limit: 10)) == Set(first))
  }

  @Test func shardingIsStableAndComplete() {
    let paths = (0..<1000).map { entry("dir\($0 % 17)/file\($0)") }
    let (shards, deferred) = ChangeQueue.shard(paths, workers: 4)
    #expect(deferred.isEmpty)
    #expect(shards.count == 4)
    #expect(shards.reduce(0) { $0 + $1.count } == 1000)
    for s in shards { #expect(s.count > 100) }  // spread, not all in one
    let again = ChangeQueue.shard(paths.reversed(), workers: 4).shards
    for (i, s) in shards.enumerated() {
      // The same path lands in the same shard whatever the order.
      let index = again.firstIndex { $0.contains(s[0]) }!
      #expect(Set(again[index]) == Set(s), "shard \(i)")
    }
    // A tree shards with the entry of the same path.
    #expect(ChangeQueue.shardHash(tree("x/y")) == ChangeQueue.shardHash(entry("x/y")))
    #expect(ChangeQueue.shard([], workers: 4).shards.isEmpty)
  }

  @Test func overlappingPathsShareAShardOrWait() {
    // Many files under one directory sent whole, and the directory itself: one shard.
    let paths =
      [tree("top")] + (0..<200).map { entry("top/f\($0)") } + (0..<200).map { entry("other/g\($0)") }
    let (shards, deferred) = ChangeQueue.shard(paths, workers: 4)
    #expect(deferred.isEmpty)
    let withTop = shards.filter { $0.contains(tree("top")) }
    #expect(withTop.count == 1)
    for i in 0..<200 { #expect(withTop[0].contains(entry("top/f\(i)"))) }
    #expect(shards.count > 1)  // the unrelated paths still spread
    // Paths held by a running transfer, or overlapping one, wait; the rest go.
    var busy = PathClaims()
    busy.claim(entry("other/g7"), by: 1)
    busy.claim(entry("deep/a/b"), by: 2)
    let second = ChangeQueue.shard(
      [entry("other/g7"), entry("deep"), entry("deep/a/b/c"), entry("deep/x"), entry("free")], workers: 2,
      busy: busy)
    #expect(Set(second.deferred) == [entry("other/g7"), entry("deep"), entry("deep/a/b/c")])
    #expect(Set(second.shards.flatMap { $0 }) == [entry("deep/x"), entry("free")])
  }

  @Test func shardsNeverExceedTheCap() {
    // Hashing alone splits these 60 paths 19/19/22 over three shards; none may carry more than 20.
    let paths = (0..<60).map { entry("burst/f\($0)") }
    #expect(ChangeQueue.shard(paths, workers: 3).shards.map(\.count).max() == 22)
    let (shards, deferred) = ChangeQueue.shard(paths, workers: 3, cap: 20)
    #expect(deferred.isEmpty)
    #expect(shards.map(\.count) == [20, 20, 20])
    // Overlapping paths stay together; what does not fit in their shard waits.
    let group = [entry("d")] + (0..<40).map { entry("d/f\($0)") }
    let capped = ChangeQueue.shard(group, workers: 2, cap: 25)
    #expect(capped.shards.map(\.count) == [25])
    #expect(capped.deferred.count == 16)
    #expect(capped.shards[0].contains(entry("d")))
  }

  @Test func pathClaimsOverlapAndRelease() {
    var c = PathClaims()
    #expect(c.isEmpty && c.owners(overlapping: entry("a")).isEmpty)
    c.claim(entry("a/b/c"), by: 1)
    c.claim(entry("a/b/c"), by: 1)
    c.claim(entry("a/x"), by: 2)
    #expect(c.owners(overlapping: entry("a")) == [1, 2])  // ancestor of both
    #expect(c.owners(overlapping: entry("a/b")) == [1])
    #expect(c.owners(overlapping: entry("a/b/c/d")) == [1])  // inside a claimed path
    #expect(c.owners(overlapping: entry("a/b/c")) == [1])
    #expect(c.owners(overlapping: entry("a/bc")).isEmpty)  // a sibling sharing a prefix is no ancestor
    #expect(c.owners(overlapping: entry("b")).isEmpty)
    c.release(entry("a/b/c"), by: 1)
    #expect(c.owners(overlapping: entry("a/b")) == [1])  // claimed twice, released once
    c.release(entry("a/b/c"), by: 1)
    #expect(c.owners(overlapping: entry("a")) == [2])
    c.release(entry("a/x"), by: 2)
    #expect(c.isEmpty && c.owners(overlapping: entry("a")).isEmpty)
  }

  @Test func pathClaimsTreesAndTheRoot() {
    var c = PathClaims()
    c.claim(tree("a"), by: 1)
    #expect(c.owners(overlapping: entry("a")) == [1])  // a tree and the entry of its path overlap
    #expect(c.owners(overlapping: entry("a/b")) == [1])
    // The root's attributes overlap only themselves.
    #expect(c.owners(overlapping: .root).isEmpty)
    c.claim(.root, by: 2)
    #expect(c.owners(overlapping: .root) == [2])
    #expect(c.owners(overlapping: entry("z")).isEmpty)
    c.release(.root, by: 2)
    c.release(tree("a"), by: 1)
    #expect(c.isEmpty)
  }

  @Test func takeReadyCoalescesAndSkipsPathsInFlight() {
    var q = ChangeQueue()
    #expect(q.takeReady(limit: 10, delay: 100, now: 0) == .nothing)
    _ = q.accept([entry("a"), entry("b")], now: 1000)
    #expect(q.takeReady(limit: 10, delay: 100, now: 1050) == .notBefore(1100))
    _ = q.accept([entry("c")], now: 1090)
    // Once the oldest is due, everything pending goes, the young one too.
    #expect(q.takeReady(limit: 10, delay: 100, now: 1100) == .batch([entry("a"), entry("b"), entry("c")]))
    // Changed again during its transfer: pending, but not taken until that transfer ends.
    _ = q.accept([entry("a"), entry("d")], now: 1200)
    #expect(q.takeReady(limit: 10, delay: 100, now: 1400) == .batch([entry("d")]))
    #expect(q.takeReady(limit: 10, delay: 100, now: 1400) == .nothing)
    #expect(q.take(limit: 10).isEmpty)
    q.done([entry("a"), entry("b"), entry("c")])
    #expect(q.takeReady(limit: 10, delay: 100, now: 1400) == .batch([entry("a")]))
    q.done([entry("a"), entry("d")])
    #expect(q.isIdle)
  }

  @Test func collapseMissingAndTrees() {
    let dirs: Set<RelativePath> = [rel("keep"), rel("new"), rel("new/a")]
    let files: Set<RelativePath> = [rel("keep/f"), rel("new/a/b"), rel("now-file")]
    let sends = ChangeQueue.collapse(
      [
        entry("gone/x/y"), entry("gone/x"), entry("gone"), entry("keep/f"), entry("keep/missing"),
        tree("new"),
        entry("new/a/b"), entry("new/a"), entry("now-file/sub/f"), entry("now-file/sub"), tree("gone-tree"),
        .root,
      ]
    ) { p in dirs.contains(p) ? .directory : files.contains(p) ? .other : .missing }
    #expect(Set(sends[entry("gone")] ?? []) == [entry("gone/x/y"), entry("gone/x"), entry("gone")])
    #expect(sends[entry("keep/f")] == [entry("keep/f")])
    #expect(sends[entry("keep/missing")] == [entry("keep/missing")])
    #expect(Set(sends[tree("new")] ?? []) == [tree("new"), entry("new/a/b"), entry("new/a")])
    // A directory that became a file: its old content goes with the file that replaces it.
    #expect(Set(sends[entry("now-file")] ?? []) == [entry("now-file/sub/f"), entry("now-file/sub")])
    // A tree that is gone again is deleted like any gone path; the root's attributes stay as they are.
    #expect(sends[entry("gone-tree")] == [tree("gone-tree")])
    #expect(sends[.root] == [.root])
    #expect(sends.count == 7)
  }
}

@Suite("Paths: relative byte paths, what a change sends, rsync path lists")
struct SyncPathTests {
  @Test func relativePathsAreChecked() {
    for bad in ["", "/abs", "a/../b", "x//y", "a/", ".", "./a", "..", "a/."] {
      #expect(RelativePath(b(bad)) == nil, "accepted '\(bad)'")
    }
    let latin: [UInt8] = [0x6C, 0xE9, 0xFF]  // not UTF-8
    #expect(RelativePath(latin + b("/x"))?.bytes == latin + b("/x"))
    #expect(RelativePath(b("-dash/new\nline"))?.bytes == b("-dash/new\nline"))
    #expect(RelativePath(name: b("f"), in: []) == rel("f"))
    #expect(RelativePath(name: b("f"), in: b("a/b")) == rel("a/b/f"))
    #expect(rel("a/b").appending(latin).bytes == b("a/b/") + latin)
    #expect(rel("a/b/c").ancestors == [rel("a"), rel("a/b")])
    #expect(rel("a").ancestors.isEmpty)
  }

  @Test func orderIsBytewiseRootFirstEntryBeforeTree() {
    let sorted = [tree("b"), entry("a/c"), .root, entry("b"), entry("a")].sorted()
    #expect(sorted == [.root, entry("a"), entry("a/c"), entry("b"), tree("b")])
    #expect(entry("a").path == rel("a") && tree("a").path == rel("a") && SyncPath.root.path == nil)
  }

  @Test func aTransferPlanSplitsByHowRsyncSends() {
    let plan = TransferPlan([tree("t"), entry("e1"), .root, entry("e2"), tree("u")])
    #expect(plan.trees == [rel("t"), rel("u")])
    #expect(plan.entries == [rel("e1"), rel("e2")])
    #expect(plan.root)
    #expect(!TransferPlan([entry("x")]).root)
    // The list rsync reads with --from0: paths without a trailing slash, each ended by NUL.
    let latin: [UInt8] = [0xE9, 0xFF]
    let list = TransferPlan.filesFrom([rel("dir/with space"), RelativePath(latin)!, rel("t")])
    #expect(list == b("dir/with space") + [0] + latin + [0] + b("t") + [0])
    #expect(TransferPlan.filesFrom([]).isEmpty)
  }
}
