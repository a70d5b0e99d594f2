"""Walking the syntax tree: one method per node type, none skipped.

As in Jinja's ``visitor.py``: ``visit(node)`` calls ``visit_<Type>`` for the
node's class, or for the nearest base class that has one (every action kind
is an ``Action``). A node with no method at all goes to ``generic_visit``,
which the checker makes an error: a node type added to the language without
its check is refused, never silently passed.
"""

from __future__ import annotations

from typing import Any, Callable, Optional


class NodeVisitor:
    def visitor_for(self, node: Any) -> Optional[Callable[..., Any]]:
        for cls in type(node).__mro__:
            method = getattr(self, f"visit_{cls.__name__}", None)
            if method is not None:
                return method
        return None

    def visit(self, node: Any, *args: Any) -> Any:
        method = self.visitor_for(node)
        if method is None:
            return self.generic_visit(node, *args)
        return method(node, *args)

    def generic_visit(self, node: Any, *args: Any) -> Any:
        raise TypeError(f"no visit method for {type(node).__name__}")
