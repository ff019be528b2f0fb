//! [`chronicle::Filter`] in SQL: each condition the filter holds (read through its public
//! accessors) becomes one `AND` clause with bind parameters, so the server evaluates
//! exactly the embedded store's conjunction and no value is ever spliced into SQL text.

use chronicle::Filter;
use tokio_postgres::types::ToSql;

/// One bind parameter of a filter clause (owned: the filter holds `String`s, the columns
/// are `bytea`).
pub(crate) type Param = Box<dyn ToSql + Sync + Send>;

/// `filter` as `" AND ..."` clauses over the `events` columns (`stream_id`,
/// `event_type`), with parameters numbered from `first`, and those parameters in order.
/// `schema` is the store's validated schema name (partitions read `streams.partition_hash`).
pub(crate) fn sql(filter: &Filter, schema: &str, first: usize) -> (String, Vec<Param>) {
    let mut sql = String::new();
    let mut params: Vec<Param> = Vec::new();
    let mut next = first;
    let mut param = |params: &mut Vec<Param>, value: Param| {
        params.push(value);
        let n = next;
        next += 1;
        n
    };
    for stream in filter.streams() {
        let n = param(&mut params, Box::new(stream.as_bytes().to_vec()));
        sql.push_str(&format!(" AND stream_id = ${n}::bytea"));
    }
    for category in filter.categories() {
        let a = param(&mut params, Box::new(category.as_bytes().to_vec()));
        let b = param(&mut params, Box::new(format!("{category}-").into_bytes()));
        sql.push_str(&format!(
            " AND (stream_id = ${a}::bytea OR substring(stream_id from 1 for octet_length(${b}::bytea)) = ${b}::bytea)"
        ));
    }
    for prefix in filter.stream_prefixes() {
        let n = param(&mut params, Box::new(prefix.as_bytes().to_vec()));
        sql.push_str(&format!(" AND substring(stream_id from 1 for octet_length(${n}::bytea)) = ${n}::bytea"));
    }
    for list in filter.event_type_lists() {
        let types: Vec<Vec<u8>> = list.iter().map(|t| t.as_bytes().to_vec()).collect();
        let n = param(&mut params, Box::new(types));
        sql.push_str(&format!(" AND event_type = ANY(${n}::bytea[])"));
    }
    for &(index, count) in filter.partitions() {
        let c = param(&mut params, Box::new(i64::from(count)));
        let i = param(&mut params, Box::new(i64::from(index)));
        // partition_hash holds the u64 hash's bits as a bigint: back to unsigned first.
        sql.push_str(&format!(
            " AND stream_id IN (SELECT ps.stream_id FROM \"{schema}\".streams ps WHERE \
             mod(ps.partition_hash::numeric + CASE WHEN ps.partition_hash < 0 THEN 18446744073709551616 ELSE 0 END, ${c}::bigint) = ${i}::bigint)"
        ));
    }
    (sql, params)
}

/// The bigint stored in `streams.partition_hash` for `stream`: the bits of
/// [`Filter::partition_hash`].
pub(crate) fn partition_hash(stream: &[u8]) -> i64 {
    let hash = std::str::from_utf8(stream).map_or(0, Filter::partition_hash);
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// Borrows boxed parameters as the slice tokio-postgres takes.
pub(crate) fn borrow(params: &[Param]) -> impl Iterator<Item = &(dyn ToSql + Sync)> {
    params.iter().map(|p| &**p as &(dyn ToSql + Sync))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_condition_is_one_clause_with_parameters_only() {
        let filter = Filter::category("o'rder")
            .with_stream("x")
            .with_stream_prefix("o'")
            .with_event_types(["A", "B"])
            .with_partition(1, 3);
        let (sql, params) = sql(&filter, "s", 2);
        assert_eq!(params.len(), 7);
        assert_eq!(sql.matches(" AND ").count(), 5);
        assert!(!sql.contains('\''), "a value was spliced into the SQL text: {sql}");
        assert!(sql.contains("$8::bigint"));
    }
}
