//! Order processing on chronicle's typed layer: one process per command, the data directory
//! persists between runs. `docs/event-sourcing.md` walks through it.
//!
//! ```text
//! cargo run --example order_processing -- --data DIR place ORDER CUSTOMER ITEM:QTY:PRICE_CENTS [...]
//! cargo run --example order_processing -- --data DIR add ORDER ITEM:QTY:PRICE_CENTS
//! cargo run --example order_processing -- --data DIR cancel ORDER
//! cargo run --example order_processing -- --data DIR ship ORDER TRACKING
//! cargo run --example order_processing -- --data DIR show ORDER
//! cargo run --example order_processing -- --data DIR stats
//! cargo run --example order_processing -- --data DIR watch
//! cargo run --example order_processing -- --postgres URL place ORDER CUSTOMER ITEM:QTY:PRICE_CENTS [...]
//! ```
//!
//! `--postgres URL` (e.g. `postgres://user@127.0.0.1:5432/db`) keeps the orders in
//! PostgreSQL instead of a directory, through `chronicle_postgres::PostgresStore`, in the
//! schema named by `CHRONICLE_PG_SCHEMA` (default `orders`): the same domain code, the same
//! repository, another `EventStore`. `watch` then follows a live subscription.
//!
//! Exit status: 0 done, 1 refused by the order's rules (or a store error), with a one-line
//! reason on stderr and nothing written; 2 malformed arguments, with the usage line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chronicle::typed::{Aggregate, Event, LoadSource, Repository, RepositoryError, Schema};
use chronicle::{Error, EventStore, RecordedEvent, Store};
use serde::{Deserialize, Serialize};

const USAGE: &str = "usage: order_processing (--data DIR | --postgres URL) (place ORDER CUSTOMER ITEM:QTY:PRICE_CENTS... | add ORDER ITEM:QTY:PRICE_CENTS | cancel ORDER | ship ORDER TRACKING | show ORDER | stats | watch)";

/// How long a command waits for another process (say, `watch`) to release the store.
const OPEN_WAIT_MAX: Duration = Duration::from_secs(5);
/// How often `watch` looks for new events.
const WATCH_POLL_INTERVAL: Duration = Duration::from_millis(200);

// ---- The domain: events, state, commands, rules --------------------------------------

/// One order line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Line {
    item: String,
    quantity: u32,
    price_cents: u64,
}

/// What happened to an order. The variant names are the stored event types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum OrderEvent {
    OrderPlaced { customer: String, lines: Vec<Line> },
    ItemAdded { line: Line },
    OrderCancelled,
    OrderShipped { tracking: String },
}

impl Event for OrderEvent {
    const EVENT_TYPES: &'static [(&'static str, u32)] =
        &[("OrderPlaced", 1), ("ItemAdded", 1), ("OrderCancelled", 1), ("OrderShipped", 1)];

    fn event_type(&self) -> &'static str {
        match self {
            OrderEvent::OrderPlaced { .. } => "OrderPlaced",
            OrderEvent::ItemAdded { .. } => "ItemAdded",
            OrderEvent::OrderCancelled => "OrderCancelled",
            OrderEvent::OrderShipped { .. } => "OrderShipped",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum Status {
    #[default]
    New,
    Placed,
    Cancelled,
    Shipped,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Placed => "placed",
            Status::Cancelled => "cancelled",
            Status::Shipped => "shipped",
        }
    }
}

/// The order's state, rebuilt from its events (and snapshotted every 100 events).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Order {
    status: Status,
    customer: String,
    lines: Vec<Line>,
    tracking: Option<String>,
}

impl Order {
    fn total_cents(&self) -> u64 {
        self.lines.iter().map(|l| u64::from(l.quantity).saturating_mul(l.price_cents)).fold(0, u64::saturating_add)
    }
}

#[derive(Debug, Clone)]
enum Command {
    Place { customer: String, lines: Vec<Line> },
    Add(Line),
    Cancel,
    Ship { tracking: String },
}

#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("order already exists (status {})", .0.name())]
    Exists(Status),
    #[error("order does not exist")]
    Missing,
    #[error("order is {}: only a placed order can be changed", .0.name())]
    NotPlaced(Status),
}

impl Aggregate for Order {
    type Event = OrderEvent;
    type Command = Command;
    type Error = Refused;
    const AGGREGATE_TYPE: &'static str = "order";

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::OrderPlaced { customer, lines } => {
                self.status = Status::Placed;
                self.customer.clone_from(customer);
                self.lines.clone_from(lines);
            }
            OrderEvent::ItemAdded { line } => self.lines.push(line.clone()),
            OrderEvent::OrderCancelled => self.status = Status::Cancelled,
            OrderEvent::OrderShipped { tracking } => {
                self.status = Status::Shipped;
                self.tracking = Some(tracking.clone());
            }
        }
    }

    fn handle(&self, command: Command) -> Result<Vec<OrderEvent>, Refused> {
        match (self.status, command) {
            (Status::New, Command::Place { customer, lines }) => Ok(vec![OrderEvent::OrderPlaced { customer, lines }]),
            (status, Command::Place { .. }) => Err(Refused::Exists(status)),
            (Status::New, _) => Err(Refused::Missing),
            (Status::Placed, Command::Add(line)) => Ok(vec![OrderEvent::ItemAdded { line }]),
            (Status::Placed, Command::Cancel) => Ok(vec![OrderEvent::OrderCancelled]),
            (Status::Placed, Command::Ship { tracking }) => Ok(vec![OrderEvent::OrderShipped { tracking }]),
            (status, _) => Err(Refused::NotPlaced(status)),
        }
    }
}

// ---- A projection: orders by status ----------------------------------------------------

/// A read model fed event by event in log order. Today `stats` feeds it from one read of
/// the whole log; with subscriptions it will be fed by `store.subscribe(position, filter)`
/// and keep its position, without changing this code.
trait Projection {
    fn apply(&mut self, event: &RecordedEvent);
}

#[derive(Default)]
struct OrdersByStatus {
    status: BTreeMap<String, Status>,
}

impl Projection for OrdersByStatus {
    fn apply(&mut self, event: &RecordedEvent) {
        let Some(order) = event.stream_id.strip_prefix("order-") else { return };
        let status = match event.event_type.as_str() {
            "OrderPlaced" => Status::Placed,
            "OrderCancelled" => Status::Cancelled,
            "OrderShipped" => Status::Shipped,
            _ => return,
        };
        self.status.insert(order.to_owned(), status);
    }
}

/// Feeds `projection` every event from `from_position`; returns the next position.
fn catch_up(store: &impl EventStore, from_position: u64, projection: &mut impl Projection) -> Result<u64, Error> {
    let mut next = from_position;
    for event in store.read_all(from_position)? {
        let event = event?;
        next = event.position + 1;
        projection.apply(&event);
    }
    Ok(next)
}

// ---- The command line -------------------------------------------------------------------

enum Action {
    Execute { order: String, command: Command },
    Show { order: String },
    Stats,
    Watch,
}

fn parse_line(arg: &str) -> Option<Line> {
    let mut parts = arg.split(':');
    let (item, quantity, price) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || item.is_empty() {
        return None;
    }
    Some(Line { item: item.to_owned(), quantity: quantity.parse().ok()?, price_cents: price.parse().ok()? })
}

/// Where the orders live.
enum Location {
    Data(PathBuf),
    Postgres(String),
}

fn parse(args: &[String]) -> Option<(Location, Action)> {
    let [flag, dir, verb, rest @ ..] = args else { return None };
    let location = match flag.as_str() {
        _ if dir.is_empty() => return None,
        "--data" => Location::Data(PathBuf::from(dir)),
        "--postgres" => Location::Postgres(dir.clone()),
        _ => return None,
    };
    let id = |s: &String| (!s.is_empty()).then(|| s.clone());
    let action = match (verb.as_str(), rest) {
        ("place", [order, customer, lines @ ..]) if !lines.is_empty() => Action::Execute {
            order: id(order)?,
            command: Command::Place {
                customer: id(customer)?,
                lines: lines.iter().map(|l| parse_line(l)).collect::<Option<_>>()?,
            },
        },
        ("add", [order, line]) => Action::Execute { order: id(order)?, command: Command::Add(parse_line(line)?) },
        ("cancel", [order]) => Action::Execute { order: id(order)?, command: Command::Cancel },
        ("ship", [order, tracking]) => {
            Action::Execute { order: id(order)?, command: Command::Ship { tracking: id(tracking)? } }
        }
        ("show", [order]) => Action::Show { order: id(order)? },
        ("stats", []) => Action::Stats,
        ("watch", []) => Action::Watch,
        _ => return None,
    };
    Some((location, action))
}

fn connect(url: &str) -> Result<chronicle_postgres::PostgresStore, Error> {
    let schema = std::env::var("CHRONICLE_PG_SCHEMA").unwrap_or_else(|_| "orders".to_owned());
    chronicle_postgres::PostgresStore::connect_with(
        url,
        chronicle_postgres::PostgresOptions::default().schema(schema).pool_size(2),
    )
}

/// Opens the store, waiting while another process (such as `watch`) holds it.
fn open(dir: &Path) -> Result<Store, Error> {
    let started = Instant::now();
    loop {
        match Store::open(dir) {
            Err(Error::Locked { .. }) if started.elapsed() < OPEN_WAIT_MAX => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn describe(event: &OrderEvent) -> String {
    match event {
        OrderEvent::OrderPlaced { customer, lines } => format!("placed for {customer}, {} line(s)", lines.len()),
        OrderEvent::ItemAdded { line } => format!("added {} x{} @ {}", line.item, line.quantity, line.price_cents),
        OrderEvent::OrderCancelled => "cancelled".to_owned(),
        OrderEvent::OrderShipped { tracking } => format!("shipped, tracking {tracking}"),
    }
}

fn run(location: &Location, action: Action) -> Result<(), String> {
    match (location, action) {
        (Location::Data(dir), Action::Watch) => watch(dir),
        (Location::Postgres(url), Action::Watch) => watch_postgres(url),
        (Location::Data(dir), action) => run_on(open(dir).map_err(|e| e.to_string())?, action),
        (Location::Postgres(url), action) => run_on(connect(url).map_err(|e| e.to_string())?, action),
    }
}

/// Every command but `watch`, on any backend.
fn run_on<S: EventStore>(store: S, action: Action) -> Result<(), String> {
    match action {
        Action::Execute { order, command } => {
            let orders = Repository::<Order, S>::new(store);
            match orders.execute(&order, command) {
                Ok(done) => {
                    let version = done.version.map_or_else(|| "-".to_owned(), |v| v.to_string());
                    for event in &done.events {
                        println!("order {order}: {} (version {version})", describe(event));
                    }
                    Ok(())
                }
                Err(RepositoryError::Domain(refused)) => Err(format!("order {order}: {refused}")),
                Err(other) => Err(format!("order {order}: {other}")),
            }
        }
        Action::Show { order } => {
            let orders = Repository::<Order, S>::new(store);
            let loaded = orders.load(&order).map_err(|e| format!("order {order}: {e}"))?;
            let Some(version) = loaded.version else {
                return Err(format!("order {order}: {}", Refused::Missing));
            };
            let state = &loaded.state;
            println!("order {order}: {} (customer {})", state.status.name(), state.customer);
            for line in &state.lines {
                let cents = u64::from(line.quantity).saturating_mul(line.price_cents);
                println!("  {} x{} @ {} = {cents}", line.item, line.quantity, line.price_cents);
            }
            if let Some(tracking) = &state.tracking {
                println!("tracking: {tracking}");
            }
            println!("total: {} cents", state.total_cents());
            println!("version: {version}");
            match loaded.source {
                LoadSource::Snapshot { version, events_after } => {
                    println!("loaded from: snapshot at version {version} + {events_after} event(s)");
                }
                LoadSource::Replay { events } => println!("loaded from: full replay of {events} event(s)"),
                LoadSource::New => {}
            }
            Ok(())
        }
        Action::Stats => {
            let mut by_status = OrdersByStatus::default();
            catch_up(&store, 0, &mut by_status).map_err(|e| e.to_string())?;
            let mut counts: BTreeMap<Status, usize> = BTreeMap::new();
            for status in by_status.status.values() {
                *counts.entry(*status).or_default() += 1;
            }
            println!("orders: {}", by_status.status.len());
            for status in [Status::Placed, Status::Shipped, Status::Cancelled] {
                println!("  {}: {}", status.name(), counts.get(&status).copied().unwrap_or(0));
            }
            Ok(())
        }
        Action::Watch => Err("watch is run by run()".to_owned()),
    }
}

fn print_event(schema: &Schema<OrderEvent>, event: &RecordedEvent) {
    let what = match schema.decode(event) {
        Ok(Some(decoded)) => describe(&decoded),
        Ok(None) => format!("({} event)", event.event_type),
        Err(error) => format!("undecodable: {error}"),
    };
    println!("@{} {} v{}: {what}", event.position, event.stream_id, event.version);
}

/// `watch` on PostgreSQL: one live subscription (catch-up, then woken by LISTEN/NOTIFY),
/// until Ctrl-C; many processes can write meanwhile.
fn watch_postgres(url: &str) -> Result<(), String> {
    let schema = Schema::<OrderEvent>::new().skip_unknown_types();
    let store = connect(url).map_err(|e| e.to_string())?;
    let subscription = store.subscribe(0, chronicle_postgres::Filter::all()).map_err(|e| e.to_string())?;
    for event in subscription {
        print_event(&schema, &event.map_err(|e| e.to_string())?);
    }
    Ok(())
}

/// Prints events as they commit, until Ctrl-C. It polls `read_all` from the last position,
/// opening the store only for each poll so that command processes can write in between
/// (the store is exclusive to one process). With subscriptions this becomes one
/// `store.subscribe(position, Filter)` loop.
fn watch(dir: &Path) -> Result<(), String> {
    let schema = Schema::<OrderEvent>::new().skip_unknown_types();
    let mut next = 0u64;
    loop {
        {
            let store = open(dir).map_err(|e| e.to_string())?;
            for event in store.read_all(next).map_err(|e| e.to_string())? {
                let event = event.map_err(|e| e.to_string())?;
                next = event.position + 1;
                print_event(&schema, &event);
            }
            store.close().map_err(|e| e.to_string())?;
        }
        std::thread::sleep(WATCH_POLL_INTERVAL);
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((location, action)) = parse(&args) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    match run(&location, action) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("{reason}");
            ExitCode::from(1)
        }
    }
}
