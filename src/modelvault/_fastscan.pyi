def scan(
    path: str,
    sql: str,
    first: int,
    end: int,
    prev: str,
    tree_size: int,
    check_leaves: bool,
) -> tuple[int, bytes, list[int], list[int], int, str]: ...
def levels(leaves: bytes) -> list[bytes]: ...
def canonical(text: str) -> bool: ...
