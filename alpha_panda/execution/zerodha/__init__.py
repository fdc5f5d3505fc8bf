"""Pure Zerodha order logic: tags, Kite parameters, order-book types, reconciliation."""

from alpha_panda.execution.zerodha.orders import (
    KiteOrder,
    KiteTrade,
    kite_order,
    kite_order_params,
    kite_trade,
    order_id_for,
    order_tag,
)
from alpha_panda.execution.zerodha.reconcile import OrderBook, TrackedOrder, diff, fill_id

__all__ = ["KiteOrder", "KiteTrade", "OrderBook", "TrackedOrder", "diff", "fill_id",
           "kite_order", "kite_order_params", "kite_trade", "order_id_for", "order_tag"]
