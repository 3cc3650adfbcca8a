use super::super::test_span::{MS, T0, span};
use super::super::{Event, SpanRef, Waterfall};
use super::{Style, human, render};

fn trace() -> Waterfall {
    let mut rpc = span("Conmon/exec", Some("ExecSync"), "conmond", 20, 80);
    rpc.events.push(Event {
        time_unix_nano: T0 + 50 * MS,
        message: "INFO exec done".to_owned(),
    });
    rpc.error = true;
    let mut exit = span("exit", None, "conmond", 90, 100);
    exit.links.push(SpanRef {
        span_id: "ExecSync".to_owned(),
        trace_id: None,
    });
    exit.links.push(SpanRef {
        span_id: "00f067aa0ba902b7".to_owned(),
        trace_id: Some("5bf92f3577b34da6a3ce929d0e0e4736".to_owned()),
    });
    Waterfall::new(
        "4bf92f3577b34da6a3ce929d0e0e4736",
        &[span("ExecSync", None, "runtime-shim", 0, 100), rpc, exit],
    )
}

#[test]
fn bars_are_placed_and_scaled_to_the_width() {
    // 60 columns: a 13-column label ("  Conmon/exec"), a 12-column service, 9 of duration,
    // 5 of separators, so a 21-cell bar for 100 ms: Conmon/exec's 20–80 ms covers cells 4
    // (4.2) to 16 (16.8, rounded up), its event at 50 ms is in cell 10.
    let text = render(
        &trace(),
        Style {
            width: 60,
            color: false,
        },
    );
    let expected = "\
trace 4bf92f3577b34da6a3ce929d0e0e4736: 3 spans, 100.0 ms
                           0              100.0 ms
ExecSync      runtime-shim │█████████████████████│  100.0 ms
  Conmon/exec conmond      │    ██████◆██████    │   60.0 ms ✗
    ◆ +30.0 ms INFO exec done
exit          conmond      │                  ███│   10.0 ms
  ↪ links to ExecSync (runtime-shim)
  ↪ links to span 00f067aa0ba902b7 of trace 5bf92f3577b34da6a3ce929d0e0e4736
";
    assert_eq!(text, expected, "\n{text}");
}

#[test]
fn colour_marks_services_and_errors_only_when_asked() {
    let coloured = render(
        &trace(),
        Style {
            width: 80,
            color: true,
        },
    );
    assert!(
        coloured.contains("\x1b[36mruntime-shim\x1b[0m"),
        "{coloured}"
    );
    assert!(
        coloured.contains("\x1b[35mconmond     \x1b[0m"),
        "{coloured}"
    );
    assert!(coloured.contains("\x1b[31m ✗\x1b[0m"), "{coloured}");
    let plain = render(
        &trace(),
        Style {
            width: 80,
            color: false,
        },
    );
    assert!(!plain.contains('\x1b'), "{plain}");
}

#[test]
fn a_narrow_terminal_keeps_a_bar_and_cuts_names() {
    let text = render(
        &trace(),
        Style {
            width: 20,
            color: false,
        },
    );
    for line in text.lines().filter(|line| line.contains('│')) {
        let bar: String = line.split('│').nth(1).unwrap_or_default().to_owned();
        assert_eq!(bar.chars().count(), 10, "{line}");
    }
    assert!(text.contains("\n  Conmo… conmond "), "{text}");
}

#[test]
fn durations_read_in_the_unit_that_fits() {
    assert_eq!(human(45_000), "45 µs");
    assert_eq!(human(1_500_000), "1.5 ms");
    assert_eq!(human(2_345_000_000), "2.35 s");
}
