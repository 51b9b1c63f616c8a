import FleetCore
import Yams

extension InventoryReader {
  /// A `max_delete` value: a count (`1000`), a percentage (`10%`), both (`1000,10%`) or `unlimited`.
  mutating func deleteLimit(_ node: Node, _ what: String) -> DeleteLimit? {
    guard let scalar = node.scalar else {
      issue(
        node, "\(what) must be a single value, not \(kind(of: node))", hint: "write \(DeleteLimit.syntax)")
      return nil
    }
    do {
      return try DeleteLimit.parse(scalar.string)
    } catch let error as FleetError {
      issue(node, "\(what) \(error.message)", hint: "`unlimited` turns the limit off; 0 holds every delete")
      return nil
    } catch {
      issue(node, "\(what) is not a delete limit", hint: "write \(DeleteLimit.syntax)")
      return nil
    }
  }

  /// A `mass_change` value: `MIN,FACTORx,WINDOW` (`500,10x,5m`) or `off`.
  mutating func massChangeLimit(_ node: Node, _ what: String) -> MassChangeLimit? {
    guard let scalar = node.scalar else {
      issue(
        node, "\(what) must be a single value, not \(kind(of: node))", hint: "write \(MassChangeLimit.syntax)"
      )
      return nil
    }
    do {
      return try MassChangeLimit.parse(scalar.string)
    } catch let error as FleetError {
      issue(node, "\(what) \(error.message)", hint: "`off` turns the alarm off")
      return nil
    } catch {
      issue(node, "\(what) is not a mass-change setting", hint: "write \(MassChangeLimit.syntax)")
      return nil
    }
  }
}
