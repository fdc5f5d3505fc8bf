"""Orders and execution: the paper exchange, Zerodha's charges, NSE market rules. Pure."""

from alpha_panda.execution.config import ExecutionConfig
from alpha_panda.execution.costs import CostModel, Segment
from alpha_panda.execution.orders import Order, OrderStatus
from alpha_panda.execution.paper import PaperExchange

__all__ = ["CostModel", "ExecutionConfig", "Order", "OrderStatus", "PaperExchange", "Segment"]
