//! The terminal loop: raw mode and the alternate screen (restored on exit
//! and on panic, by `ratatui::try_init`), key events, and real time for
//! playback. The only place of the simulator's crate with a wall clock: it
//! paces the replay, it never touches a run's results.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use super::app::{App, Key};
use super::ui;

pub(super) fn run(mut app: App) -> Result<(), String> {
    if !std::io::stdout().is_terminal() {
        return Err(
            "meshsim replay needs a terminal; to print one frame as text, use --frame-at TIME"
                .to_owned(),
        );
    }
    let mut terminal =
        ratatui::try_init().map_err(|e| format!("cannot set up the terminal: {e}"))?;
    let result = event_loop(&mut terminal, &mut app);
    let restored = ratatui::try_restore();
    result.map_err(|e| format!("terminal error: {e}"))?;
    restored.map_err(|e| format!("cannot restore the terminal: {e}"))
}

fn key_of(code: KeyCode, modifiers: KeyModifiers) -> Option<Key> {
    let shift = modifiers.contains(KeyModifiers::SHIFT);
    Some(match code {
        KeyCode::Left if shift => Key::ShiftLeft,
        KeyCode::Right if shift => Key::ShiftRight,
        KeyCode::Left => Key::Left,
        KeyCode::Right => Key::Right,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        KeyCode::Tab => Key::Tab,
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Backspace => Key::Backspace,
        KeyCode::Char('c') if modifiers.contains(KeyModifiers::CONTROL) => Key::Char('q'),
        KeyCode::Char(c) => Key::Char(c),
        _ => return None,
    })
}

fn event_loop(terminal: &mut ratatui::DefaultTerminal, app: &mut App) -> std::io::Result<()> {
    let mut last = Instant::now();
    while !app.quit {
        terminal.draw(|f| ui::draw(f, app))?;
        let wait = if app.playing {
            Duration::from_millis(30)
        } else {
            Duration::from_millis(500)
        };
        if event::poll(wait)? {
            match event::read()? {
                Event::Key(k) if k.kind != KeyEventKind::Release => {
                    if let Some(key) = key_of(k.code, k.modifiers) {
                        app.key(key);
                    }
                }
                // A resize is drawn by the next loop turn.
                _ => {}
            }
        }
        let now = Instant::now();
        app.tick(now - last);
        last = now;
    }
    Ok(())
}
